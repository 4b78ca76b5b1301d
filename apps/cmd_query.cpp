// `melgraph query --index I (--audio FILE | --item ID | --queries FILE|-)`: the k nearest items
// by cosine similarity, optionally filtered by catalog columns (engine/index/index_query.h,
// query_batch.h). The index is opened read-only and loaded once.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "engine/backend_factory.h"
#include "engine/index/ann.h"
#include "engine/index/index_format.h"
#include "engine/index/index_query.h"
#include "engine/index/query_batch.h"

namespace mg::cli {

namespace {

struct QueryCliOptions {
  std::string index, audio, item, queries, checkpoint, exclude_same;
  std::vector<std::string> where;
  int k = 10;
  bool json = false, exact = false;
  std::string device = "auto";
  int threads = 0;
};

// Queries a batch at a time from FILE (or standard input), JSON lines to standard output as
// each batch is answered. Queries that cannot be answered get a line that says why, the rest
// are answered, and then the command ends as for bad input (exit status 2).
void run_batch(const QueryCliOptions& c, Backend& be, const index::Index& x, const index::QueryFilter& filter,
               const index::AnnSearcher* ann) {
  index::BatchQuery batch(be, x, filter, c.k, c.checkpoint, ann);
  const bool from_stdin = c.queries == "-";
  const int fd = from_stdin ? STDIN_FILENO : ::open(c.queries.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UsageError("--queries " + c.queries + ": " + std::strerror(errno));
  const std::string source = from_stdin ? "standard input" : c.queries;
  try {
    index::read_query_batches(fd, source, 4096, [&](const std::vector<index::QueryLine>& lines) {
      for (const std::string& l : batch.run(lines)) std::printf("%s\n", l.c_str());
      std::fflush(stdout);
    });
  } catch (...) {
    if (!from_stdin) ::close(fd);
    throw;
  }
  if (!from_stdin) ::close(fd);
  if (batch.failed() > 0)
    throw UsageError(std::to_string(batch.failed()) + " of " + std::to_string(batch.failed() + batch.answered()) +
                     " queries from " + source + " could not be answered: their output lines hold \"error\"");
}

void run_query(const QueryCliOptions& c) {
  const int modes = !c.audio.empty() + !c.item.empty() + !c.queries.empty();
  if (modes != 1) throw UsageError("query: give exactly one of --audio FILE, --item ID and --queries FILE|-");
  try {
    index::QueryFilter filter;
    for (const std::string& w : c.where) filter.where.push_back(index::parse_where(w));
    filter.exclude_same = c.exclude_same;
    const index::Index x = index::read_index(c.index);
    BackendOptions bo;
    parse_device(c.device, bo);
    bo.threads = c.threads;
    std::string note;
    const std::unique_ptr<Backend> be = make_backend(bo, &note);
    const std::unique_ptr<index::AnnSearcher> ann = c.exact ? nullptr : index::AnnSearcher::open(x, c.index);
    if (ann && filter.empty())
      std::fprintf(stderr, "melgraph: query: approximate search (%s); --exact for the exact one\n",
                   ann->describe().c_str());
    if (!c.queries.empty()) return run_batch(c, *be, x, filter, ann.get());
    const index::QueryResult r = c.item.empty()
                                     ? index::query_audio(*be, x, c.audio, c.k, c.checkpoint, filter, ann.get())
                                     : index::query_item(*be, x, c.item, c.k, filter, ann.get());
    if (c.json) {
      std::printf("%s\n", index::hits_json(x, r, c.k).c_str());
    } else {
      std::printf("%d nearest of %lld items to %s (%s):\n", c.k, static_cast<long long>(x.size()), r.query.c_str(),
                  be->describe().c_str());
      std::fputs(index::format_hits(x, r).c_str(), stdout);
    }
  } catch (const index::IndexInputError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace

void register_query(CLI::App& app) {
  auto opts = std::make_shared<QueryCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "query", "The nearest items of an index to audio files, to its items or to vectors (exact top-k cosine)");
  cmd->add_option("--index", opts->index, "Index file (melgraph export)")->required();
  cmd->add_option("--audio", opts->audio, "Query by this audio file, embedded with the index's model");
  cmd->add_option("--item", opts->item, "Query by this item's stored vector (the item itself is left out)");
  cmd->add_option("--queries", opts->queries,
                  "Many queries, one per line (an id or an audio path, or JSON {\"item\"|\"audio\"|\"vector\": ...}), "
                  "answered as JSON lines in order; - reads standard input and answers as lines arrive");
  cmd->add_option("-k", opts->k, "Results")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--where", opts->where,
                  "Only items whose catalog COLUMN equals VALUE (COLUMN=VALUE; repeat: all must hold)");
  cmd->add_option("--exclude-same", opts->exclude_same,
                  "Leave out items that share the query item's value in this catalog column (e.g. artist)");
  cmd->add_flag("--exact", opts->exact, "Exact search even when the index has an approximate one beside it (--ann)");
  cmd->add_flag("--json", opts->json, "One JSON object instead of a table (--queries always writes JSON lines)");
  cmd->add_option("--checkpoint", opts->checkpoint,
                  "Checkpoint for audio queries (default: the one the index records; its SHA-256 must match)");
  cmd->add_option("--device", opts->device, kDeviceHelp)->capture_default_str()->check(device_check());
  cmd->add_option("--threads", opts->threads, "CPU threads for the CPU backend (0: all cores)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->callback([opts] { run_query(*opts); });
}

}  // namespace mg::cli
