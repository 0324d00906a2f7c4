// How records are read from PostgreSQL rows: the same columns and text layouts as SQLite's
// (sqlite_rows.hpp: keys as base64, lists comma-separated), from a PgResult.
#pragma once

#include "coordinator/pg_conn.hpp"
#include "coordinator/records.hpp"
#include "coordinator/sqlite_rows.hpp"

namespace knit::coordinator::pg_rows {

using rows::join_endpoints;
using rows::join_list;
using rows::kNodeColumns;
using rows::kRelayColumns;
using rows::kTokenColumns;
using rows::parse_key;
using rows::split_endpoints;
using rows::split_list;

Node read_node(const PgResult& r, int row);
Token read_token(const PgResult& r, int row);
Relay read_relay(const PgResult& r, int row);  // the token id is column 5

}  // namespace knit::coordinator::pg_rows
