// The error `melgraph report` throws for inputs it cannot use (a directory that is no training
// run, an unknown run id, an unreadable index, an unknown --color-by column). The message names
// the file or option and what to do; the command turns it into a usage error (exit code 2).
#pragma once
#include <stdexcept>

namespace mg::report {

struct ReportInputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mg::report
