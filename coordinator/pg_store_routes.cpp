// PgStore: free-form settings rows read and changed atomically (routes.hpp keeps route
// advertisements and approvals there).
#include "coordinator/pg_store.hpp"

namespace knit::coordinator {

Result<std::optional<std::string>> PgStore::read_setting(std::string_view key) {
  std::optional<std::string> out;
  auto r = conn_.run_transaction([&]() -> Result<void> {
    auto v = get_setting(key);
    if (!v) return v.error();
    out = *v;
    return Ok{};
  });
  if (!r) return r.error();
  return out;
}

Result<void> PgStore::update_setting(std::string_view key, const SettingChange& change) {
  return conn_.run_transaction([&]() -> Result<void> {
    // A row that does not exist yet cannot be locked FOR UPDATE: serialise on the table.
    if (auto r = conn_.exec("LOCK TABLE settings IN SHARE ROW EXCLUSIVE MODE"); !r) return r.error();
    auto old = get_setting(key);
    if (!old) return old.error();
    std::vector<wg::PublicKey> changed;
    auto value = change(*old, changed);
    if (!value) return value.error();
    if (!*value) return Ok{};
    if (auto r = put_setting(key, **value); !r) return r;
    for (const wg::PublicKey& node : changed)
      if (auto r = notify(StoreChange::Kind::node, &node); !r) return r;
    return Ok{};
  });
}

}  // namespace knit::coordinator
