// SqliteStore: the free IPv4 ranges (ipam.hpp) that make a join O(log N). Each look-up is one
// step down the ipv4_free primary key; the table is built from the nodes once (a mesh created
// before schema v4, or a prefix just set) and kept in step by every join and removal.
#include <charconv>

#include "coordinator/mesh_settings.hpp"
#include "coordinator/sqlite_rows.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

Result<std::optional<FreeRange>> SqliteStore::range_lookup(bool floor, std::uint32_t at) {
  auto stmt = db_.prepare(floor ? "SELECT first, last FROM ipv4_free WHERE first <= ?1 "
                                  "ORDER BY first DESC LIMIT 1"
                                : "SELECT first, last FROM ipv4_free WHERE first > ?1 "
                                  "ORDER BY first LIMIT 1");
  if (!stmt) return stmt.error();
  stmt->bind(1, std::int64_t{at});
  switch (stmt->step()) {
    case Statement::Step::row:
      return std::optional<FreeRange>(FreeRange{static_cast<std::uint32_t>(stmt->column_int(0)),
                                                static_cast<std::uint32_t>(stmt->column_int(1))});
    case Statement::Step::done: return std::optional<FreeRange>();
    case Statement::Step::failed: break;
  }
  return stmt->error();
}

Result<void> SqliteStore::rebuild_free_ranges(const MeshSettings& mesh) {
  auto ipam = Ipam::make(mesh.ipv4_prefix, mesh.ipv6_prefix);
  if (!ipam) return Error{Errc::io, "the state database holds an unusable mesh prefix"};
  std::vector<std::uint32_t> used;
  {
    auto stmt = db_.prepare("SELECT ipv4 FROM nodes");
    if (!stmt) return stmt.error();
    for (;;) {
      auto step = stmt->step();
      if (step == Statement::Step::done) break;
      if (step == Statement::Step::failed) return stmt->error();
      if (auto a = IpAddress::parse(stmt->column_text(0)); a && a->is_v4())
        used.push_back(a->v4_host_order());
    }
  }
  if (auto r = db_.exec("DELETE FROM ipv4_free"); !r) return r;
  auto insert = db_.prepare("INSERT INTO ipv4_free (first, last) VALUES (?1, ?2)");
  if (!insert) return insert.error();
  for (const FreeRange& range : ipam->free_ranges(std::move(used))) {
    if (auto r = insert->bind(1, std::int64_t{range.first}).bind(2, std::int64_t{range.last}).run();
        !r)
      return r;
  }
  return put_setting(kFreeBuiltKey, "1");
}

Result<Ipam::Allocation> SqliteStore::take_address(const MeshSettings& mesh) {
  auto ipam = Ipam::make(mesh.ipv4_prefix, mesh.ipv6_prefix);
  if (!ipam) return Error{Errc::io, "the state database holds an unusable mesh prefix"};
  auto built = get_setting(kFreeBuiltKey);
  if (!built) return built.error();
  if (!*built)
    if (auto r = rebuild_free_ranges(mesh); !r) return r.error();

  auto cursor_text = get_setting(kIpv4CursorKey);
  if (!cursor_text) return cursor_text.error();
  std::uint32_t cursor = 0;  // unparsable: start from the beginning
  if (const auto& text = *cursor_text)
    std::from_chars(text->data(), text->data() + text->size(), cursor);

  FallibleRanges ranges([this](bool floor, std::uint32_t at) { return range_lookup(floor, at); });
  Ipam::Allocation allocation = ipam->allocate(cursor, ranges.floor(), ranges.above());
  if (ranges.failed()) return *ranges.failed();
  if (allocation.status == Ipam::Status::mesh_full) return allocation;

  auto drop = db_.prepare("DELETE FROM ipv4_free WHERE first = ?1");
  if (!drop) return drop.error();
  if (auto r = drop->bind(1, std::int64_t{allocation.from.first}).run(); !r) return r.error();
  auto insert = db_.prepare("INSERT INTO ipv4_free (first, last) VALUES (?1, ?2)");
  if (!insert) return insert.error();
  for (const FreeRange& range : allocation.rest)
    if (auto r = insert->bind(1, std::int64_t{range.first}).bind(2, std::int64_t{range.last}).run();
        !r)
      return r.error();
  if (auto r = put_setting(kIpv4CursorKey, std::to_string(allocation.next_cursor)); !r)
    return r.error();
  return allocation;
}

Result<void> SqliteStore::release_address(const MeshSettings& mesh, const IpAddress& ipv4) {
  if (!ipv4.is_v4()) return Ok{};
  auto built = get_setting(kFreeBuiltKey);
  if (!built) return built.error();
  if (!*built) return Ok{};  // built from the nodes when first needed
  auto ipam = Ipam::make(mesh.ipv4_prefix, mesh.ipv6_prefix);
  if (!ipam) return Error{Errc::io, "the state database holds an unusable mesh prefix"};
  FallibleRanges ranges([this](bool floor, std::uint32_t at) { return range_lookup(floor, at); });
  const Ipam::Release release =
      ipam->release(ipv4.v4_host_order(), ranges.floor(), ranges.above());
  if (ranges.failed()) return *ranges.failed();
  if (release.already_free) return Ok{};
  auto drop = db_.prepare("DELETE FROM ipv4_free WHERE first = ?1");
  if (!drop) return drop.error();
  for (const FreeRange& range : release.remove)
    if (auto r = drop->bind(1, std::int64_t{range.first}).run(); !r) return r;
  auto insert = db_.prepare("INSERT INTO ipv4_free (first, last) VALUES (?1, ?2)");
  if (!insert) return insert.error();
  return insert->bind(1, std::int64_t{release.merged.first})
      .bind(2, std::int64_t{release.merged.last})
      .run();
}

}  // namespace knit::coordinator
