// The fixture the coordinator's admin-CLI tests share: the same run_cli that main() calls, in
// process, on a temporary state directory, with a manual clock, a seeded random source and
// captured output; and the SQLite store it wrote, opened for checks.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "coordinator/admin_cli.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator::cli_test {

struct CliRun {
  int code;
  std::string out;
  std::string err;
  // The last line of out (a created token is printed alone there).
  std::string last_line() const {
    std::string text = out;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    const auto newline = text.rfind('\n');
    return newline == std::string::npos ? text : text.substr(newline + 1);
  }
};

class CoordinatorCliTest : public ::testing::Test {
 protected:
  explicit CoordinatorCliTest(std::uint64_t seed) : rng_(seed) {}

  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "knit-cli-XXXXXX").string();
    root_ = ::mkdtemp(pattern.data());
    state_ = root_ / "state";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  // knit-coordinator --state-dir STATE ARGS...
  CliRun run(std::vector<std::string> args) {
    args.insert(args.begin(), {"knit-coordinator", "--state-dir", state_.string()});
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    std::ostringstream out, err;
    CliContext ctx{out, err, [this] { return now_; }, rng_};
    const int code = run_cli(static_cast<int>(argv.size()), argv.data(), ctx);
    return CliRun{code, out.str(), err.str()};
  }

  std::unique_ptr<SqliteStore> store() {
    auto s = SqliteStore::open((state_ / "knit.db").string());
    EXPECT_TRUE(s);
    return std::move(*s);
  }

  std::filesystem::path root_;
  std::filesystem::path state_;
  UnixSeconds now_ = 1'700'000'000;
  SeededRandom rng_;
};

}  // namespace knit::coordinator::cli_test
