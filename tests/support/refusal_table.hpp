// A numbered table of answers a parser must refuse, run the same way for every protocol: each
// row (with `id`, `what` and `expected`) goes through `parse(row, output)`, which must give the
// row's error and leave the output untouched (a field preset to a mark keeps it), so a refused
// answer can never be half taken.
#pragma once

#include <gtest/gtest.h>

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

}  // namespace knit::testing
