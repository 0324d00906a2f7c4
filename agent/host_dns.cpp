#include "agent/host_dns.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/log.hpp"

extern char** environ;

namespace knit::agent {
namespace fs = std::filesystem;
namespace {

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// In place (O_TRUNC on the path itself): a bind-mounted or symlinked resolv.conf stays so.
bool write_in_place(const fs::path& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return ::close(fd) == 0;
}

// A new file, atomically (written, synced, renamed).
bool write_new(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  if (!write_in_place(tmp, text)) return false;
  std::error_code ec;
  fs::rename(tmp, path, ec);
  return !ec;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

ResolvConf parse_resolv_conf(const std::string& text) {
  ResolvConf out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto w = words(line);
    if (w.empty() || w[0][0] == '#' || w[0][0] == ';') continue;
    if (w[0] == "nameserver" && w.size() >= 2) {
      if (auto a = IpAddress::parse(w[1])) out.nameservers.push_back(*a);
    } else if (w[0] == "search" || w[0] == "domain") {
      out.search.assign(w.begin() + 1, w.end());  // the last one wins (resolv.conf(5))
    } else {
      out.other_lines.push_back(line);
    }
  }
  return out;
}

std::string render_resolv_conf(const ResolvConf& original, const HostDnsWish& wish) {
  std::string out = "# Written by knitd (knit set --manage-resolv-conf=true): mesh names (" + wish.domain +
                    ") and the rest through the mesh resolver.\n# The original is restored on `knit down` and when "
                    "knitd exits.\n";
  for (const IpAddress& a : wish.resolvers) out += "nameserver " + a.to_string() + "\n";
  out += "search " + wish.domain;
  for (const std::string& s : original.search)
    if (s != wish.domain) out += " " + s;
  out += "\n";
  for (const std::string& line : original.other_lines) out += line + "\n";
  return out;
}

const char* HostDns::to_string(Mode mode) {
  switch (mode) {
    case Mode::off: return "off";
    case Mode::resolved: return "resolved";
    case Mode::resolv_conf: return "resolv.conf";
  }
  return "off";
}

bool HostDns::resolved_available() const {
  std::error_code ec;
  if (!fs::is_directory(options_.resolved_runtime, ec)) return false;
  // resolvectl on PATH.
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (::access((fs::path(dir) / options_.resolvectl).c_str(), X_OK) == 0) return true;
  return false;
}

bool HostDns::run(const std::vector<std::string>& argv) const {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  if (::posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return false;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void HostDns::recover() {
  std::error_code ec;
  if (!fs::exists(backup_path(), ec)) return;
  auto saved = read_file(backup_path());
  if (saved && write_in_place(options_.resolv_conf, *saved)) {
    fs::remove(backup_path(), ec);
    log(LogLevel::warn, "knitd", "dns: restored ", options_.resolv_conf.string(), " from the backup a previous knitd left");
  }
}

std::vector<Endpoint> HostDns::original_resolvers() const {
  std::error_code ec;
  auto text = fs::exists(backup_path(), ec) ? read_file(backup_path()) : read_file(options_.resolv_conf);
  std::vector<Endpoint> out;
  if (!text) return out;
  for (const IpAddress& a : parse_resolv_conf(*text).nameservers) {
    if (a.is_v4() && a.v4_host_order() == 0x64646464) continue;  // ours
    out.emplace_back(a, 53);
  }
  return out;
}

void HostDns::apply(const HostDnsWish& wish, bool manage_resolv_conf) {
  if (resolved_available()) {
    if (mode_ == Mode::resolv_conf) revert();
    std::vector<std::string> dns = {options_.resolvectl, "dns", wish.link};
    for (const IpAddress& a : wish.resolvers) dns.push_back(a.to_string());
    std::vector<std::string> domain = {options_.resolvectl, "domain", wish.link, "~" + wish.domain};
    for (const std::string& d : wish.split_domains) domain.push_back("~" + d);
    const bool ok = run(dns) && run(domain) && run({options_.resolvectl, "default-route", wish.link, "false"});
    mode_ = ok ? Mode::resolved : Mode::off;
    link_ = wish.link;
    detail_ = ok ? "link " + wish.link + ", routing domains" : "resolvectl failed on link " + wish.link;
    if (ok)
      for (std::size_t i = 3; i < domain.size(); ++i) detail_ += " " + domain[i];
    log(ok ? LogLevel::info : LogLevel::warn, "knitd", "dns: systemd-resolved: ", detail_);
    return;
  }
  if (!manage_resolv_conf) {
    if (mode_ == Mode::resolv_conf) revert();
    mode_ = Mode::off;
    detail_ = "no systemd-resolved, and --manage-resolv-conf is off";
    return;
  }
  std::error_code ec;
  if (!fs::exists(backup_path(), ec)) {
    auto original = read_file(options_.resolv_conf);
    if (!original) original = std::string();
    fs::create_directories(options_.state_dir, ec);
    if (!write_new(backup_path(), *original)) {
      mode_ = Mode::off;
      detail_ = "cannot back up " + options_.resolv_conf.string() + " to " + backup_path().string();
      log(LogLevel::warn, "knitd", "dns: ", detail_);
      return;
    }
  }
  auto original = read_file(backup_path());
  const std::string text = render_resolv_conf(parse_resolv_conf(original.value_or("")), wish);
  if (!write_in_place(options_.resolv_conf, text)) {
    mode_ = Mode::off;
    detail_ = "cannot write " + options_.resolv_conf.string() + ": " + std::strerror(errno);
    log(LogLevel::warn, "knitd", "dns: ", detail_);
    return;
  }
  if (mode_ != Mode::resolv_conf)
    log(LogLevel::info, "knitd", "dns: ", options_.resolv_conf.string(), " points at the mesh resolver (backup ",
        backup_path().string(), ")");
  mode_ = Mode::resolv_conf;
  detail_ = options_.resolv_conf.string() + ", backup " + backup_path().string();
}

void HostDns::revert() {
  if (mode_ == Mode::resolved && !link_.empty()) {
    run({options_.resolvectl, "revert", link_});
  }
  std::error_code ec;
  if (fs::exists(backup_path(), ec)) {
    auto saved = read_file(backup_path());
    if (saved && write_in_place(options_.resolv_conf, *saved)) {
      fs::remove(backup_path(), ec);
      log(LogLevel::info, "knitd", "dns: restored ", options_.resolv_conf.string());
    } else {
      log(LogLevel::warn, "knitd", "dns: cannot restore ", options_.resolv_conf.string(), " (the backup stays at ",
          backup_path().string(), ")");
    }
  }
  mode_ = Mode::off;
  detail_ = "not configured";
}

}  // namespace knit::agent
