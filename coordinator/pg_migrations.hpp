// The PostgreSQL schema: the same versions as SQLite's (migrations.cpp), each step the same
// tables and columns in PostgreSQL's dialect (BIGINT for INTEGER, BYTEA for BLOB, BIGSERIAL for
// the row id). Version 4's change log is SQLite's alone: PostgreSQL announces changes with
// NOTIFY. Several coordinators may start at once: the steps run under an advisory lock.
#pragma once

#include "coordinator/pg_conn.hpp"
#include "coordinator/result.hpp"

namespace knit::coordinator {

int pg_latest_schema_version();
Result<int> pg_schema_version(PgConnection& conn);
Result<void> pg_migrate(PgConnection& conn);

}  // namespace knit::coordinator
