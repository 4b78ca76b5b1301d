// melgraph: the command-line entry point. Subcommands live in cmd_*.cpp (see commands.h);
// this file only assembles them and turns every failure into one "melgraph: error:" line
// with a distinct exit code: 2 for usage and config errors, 1 for failures while running.
#include <cstdio>
#include <exception>
#include <string>

#include "apps/commands.h"
#include "build_info.h"
#include "engine/config.h"
#include "graph/edge_list.h"

namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

int report(const std::string& message, int code) {
  std::fprintf(stderr, "melgraph: error: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"melgraph: a training engine for music embeddings "
               "(log-mel -> conv stack -> L2-normalised embedding, triplet loss)",
               "melgraph"};
  app.set_version_flag("--version", std::string("melgraph ") + MELGRAPH_VERSION +
                                        "\nbackends: " + MELGRAPH_BACKENDS +
                                        "\nCUDA toolkit: " + MELGRAPH_CUDA_STATUS);
  app.require_subcommand(1);

  mg::cli::register_model(app);
  mg::cli::register_demo(app);
  mg::cli::register_graph(app);
  mg::cli::register_bench(app);
  mg::cli::register_prepare(app);
  mg::cli::register_mel(app);
  mg::cli::register_train(app);
  mg::cli::register_export(app);
  mg::cli::register_query(app);
  mg::cli::register_eval(app);
  mg::cli::register_quality(app);
  mg::cli::register_report(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(std::string(e.what()) + " (see 'melgraph --help')", kExitUsage);
  } catch (const mg::ConfigError& e) {
    return report(e.what(), kExitUsage);
  } catch (const mg::cli::UsageError& e) {
    return report(e.what(), kExitUsage);
  } catch (const mg::graph::GraphInputError& e) {  // bad graph/catalog input: the message says where
    return report(e.what(), kExitUsage);
  } catch (const std::exception& e) {
    return report(e.what(), kExitRuntime);
  }
  return 0;
}
