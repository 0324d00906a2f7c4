// SqliteStore: free-form settings rows read and changed atomically (routes.hpp keeps route
// advertisements and approvals there).
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

Result<std::optional<std::string>> SqliteStore::read_setting(std::string_view key) {
  return get_setting(key);
}

Result<void> SqliteStore::update_setting(std::string_view key, const SettingChange& change) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto old = get_setting(key);
  if (!old) return old.error();
  std::vector<wg::PublicKey> changed;
  auto value = change(*old, changed);
  if (!value) return value.error();
  if (!*value) return Ok{};  // nothing to write; the transaction rolls back
  if (auto r = put_setting(key, **value); !r) return r;
  for (const wg::PublicKey& node : changed)
    if (auto r = note(StoreChange::Kind::node, &node); !r) return r;
  return tx->commit();
}

}  // namespace knit::coordinator
