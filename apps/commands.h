// The melgraph subcommands. Each cmd_<name>.cpp defines register_<name>(), which adds its
// subcommand (options and callback) to the top-level app; main.cpp calls every one of them.
// Callbacks report failures by throwing: UsageError / mg::ConfigError for bad input (exit
// code 2), any other std::exception for failures at run time (exit code 1).
#pragma once
#include <CLI/CLI.hpp>
#include <stdexcept>
#include <string>

#include "engine/backend_factory.h"

namespace mg::cli {

// The command line or its inputs cannot work; the message says what to change.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --device's check at parse time (a usage error, exit code 2): the words parse_device takes.
inline CLI::Validator device_check() {
  return CLI::Validator(
      [](std::string& s) {
        BackendOptions o;
        try {
          parse_device(s, o);
        } catch (const std::invalid_argument& e) {
          return std::string(e.what());
        }
        return std::string();
      },
      "auto|cpu|cuda|cuda:N", "device");
}

void register_model(CLI::App& app);
void register_demo(CLI::App& app);
void register_graph(CLI::App& app);
void register_bench(CLI::App& app);
void register_prepare(CLI::App& app);
void register_mel(CLI::App& app);
void register_train(CLI::App& app);
void register_export(CLI::App& app);  // export and export-npy
void register_query(CLI::App& app);
void register_eval(CLI::App& app);
void register_quality(CLI::App& app);
void register_report(CLI::App& app);

}  // namespace mg::cli
