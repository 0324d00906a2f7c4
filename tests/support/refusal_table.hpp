// A numbered table of answers a parser must refuse, run the same way for every protocol: each
// row (with `id`, `what` and `expected`) goes through `parse(row, output)`, which must give the
// row's error and leave the output untouched (a field preset to a mark keeps it), so a refused
// answer can never be half taken. And the drop counters a list of refusals leaves behind.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

namespace knit::testing {

template <typename Output, typename Field, typename Row, typename Parse>
void expect_refusals(const std::vector<Row>& table, Field Output::*untouched, Field mark, Parse parse) {
  for (const Row& row : table) {
    Output output;
    output.*untouched = mark;
    EXPECT_EQ(parse(row, output), row.expected) << "#" << row.id << " " << row.what;
    EXPECT_EQ(output.*untouched, mark) << "#" << row.id << ": output touched on failure";
  }
}

// The counters after count_drop(error, counters) (found by ADL) for each error, in order.
template <typename Counters, typename Error>
Counters counted_drops(std::initializer_list<Error> errors) {
  Counters counters;
  for (const Error error : errors) count_drop(error, counters);
  return counters;
}

}  // namespace knit::testing
