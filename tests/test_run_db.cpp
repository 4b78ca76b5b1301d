// Results database: round trip of runs and metrics, status transitions, reopen + resume,
// atomic flushes (a failing flush writes nothing and keeps its buffer), metrics of unknown or
// deleted runs (refused, never left in the buffer to fail later flushes), a writer blocked by
// another process's lock, refusal of newer and foreign files, read-only readers (nothing
// written, a live writer's commits seen), and a reader in Python's sqlite3
// (another tool reading the file while the run is open).
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "build_info.h"
#include "engine/io/line_log.h"
#include "engine/sqlite/sqlite_db.h"
#include "engine/train/run_db.h"
#include "tests/reference_harness.h"
#include "tests/test_support.h"

namespace mg {
namespace {

RunInfo info(const std::string& name, uint64_t seed = 17) {
  RunInfo i;
  i.name = name;
  i.config = "[train]\nsteps = 10\nseed = " + std::to_string(seed) + "\n";
  i.seed = seed;
  i.device = "cpu";
  return i;
}

// Raw SQL on the file through a second connection (what another tool would do).
void raw_exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const RunDbError& e) {
    return e.what();
  }
  return "(no RunDbError thrown)";
}

TEST(RunDb, RoundTrip) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb db(path);
  const int64_t id = db.begin_run(info("first"));
  EXPECT_EQ(id, 1);
  db.log(id, 1, "loss", 0.75);
  db.log(id, 2, "loss", 0.5);
  db.log(id, 2, "val/recall@10", std::numeric_limits<double>::quiet_NaN());
  db.log(id, 3, "grad_norm", std::numeric_limits<double>::infinity());
  EXPECT_EQ(db.pending(), 4u);
  EXPECT_TRUE(db.metrics(id).empty());  // buffered, not written
  db.flush();
  EXPECT_EQ(db.pending(), 0u);

  const std::optional<RunRecord> r = db.run(id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->info.name, "first");
  EXPECT_EQ(r->info.config, info("first").config);
  EXPECT_EQ(r->info.seed, 17u);
  EXPECT_EQ(r->info.device, "cpu");
  EXPECT_EQ(r->info.git_commit, MELGRAPH_GIT_COMMIT);  // empty in RunInfo: the build's commit
  EXPECT_FALSE(r->info.git_commit.empty());
  EXPECT_TRUE(std::regex_match(r->started_at, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"))) << r->started_at;
  EXPECT_FALSE(r->ended_at.has_value());
  EXPECT_EQ(r->status, RunStatus::Running);
  EXPECT_FALSE(db.run(id + 1).has_value());

  const std::vector<MetricRow> loss = db.metrics(id, "loss");
  ASSERT_EQ(loss.size(), 2u);
  EXPECT_EQ(loss[0].step, 1);
  EXPECT_EQ(loss[0].value, 0.75);
  EXPECT_EQ(loss[1].value, 0.5);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(loss[0].time, now, 60.0);
  const std::vector<MetricRow> all = db.metrics(id);
  ASSERT_EQ(all.size(), 4u);  // by name: grad_norm, loss, loss, val/recall@10
  EXPECT_EQ(all[0].name, "grad_norm");
  EXPECT_TRUE(std::isinf(all[0].value));
  EXPECT_EQ(all[3].name, "val/recall@10");
  EXPECT_TRUE(std::isnan(all[3].value));  // stored as NULL

  RunInfo explicit_commit = info("second", 3);
  explicit_commit.git_commit = "abc123";
  const int64_t id2 = db.begin_run(explicit_commit);
  EXPECT_EQ(db.run(id2)->info.git_commit, "abc123");
  EXPECT_EQ(db.runs().size(), 2u);
  EXPECT_TRUE(db.metrics(id2).empty());
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// metrics.jsonl holds what was committed, in order, with the run's events: a metric reaches it
// at the flush that writes it to the database, never before.
TEST(RunDb, JsonlMirrorFollowsTheCommits) {
  test::TempDir dir;
  const std::string jsonl = dir.file("metrics.jsonl");
  RunDb db(dir.file("runs.sqlite"));
  db.mirror_to_jsonl(jsonl);
  const int64_t id = db.begin_run(info("tail"));
  db.log(id, 1, "train.loss", 0.75);
  db.log(id, 1, "val.recall@10", std::numeric_limits<double>::quiet_NaN());
  db.log(id, 2, "train.grad_norm", -std::numeric_limits<double>::infinity());
  std::vector<nlohmann::json> lines = read_jsonl(jsonl);
  ASSERT_EQ(lines.size(), 1u);  // buffered metrics are not mirrored
  EXPECT_EQ(lines[0]["event"], "begin");
  EXPECT_EQ(lines[0]["run"], id);
  EXPECT_EQ(lines[0]["name"], "tail");
  db.flush();
  lines = read_jsonl(jsonl);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[1]["name"], "train.loss");
  EXPECT_EQ(lines[1]["step"], 1);
  EXPECT_EQ(lines[1]["value"], 0.75);
  EXPECT_EQ(lines[1]["run"], id);
  EXPECT_NEAR(lines[1]["time"].get<double>(), db.metrics(id, "train.loss")[0].time, 1e-3);
  EXPECT_TRUE(lines[2]["value"].is_null());  // NaN
  EXPECT_TRUE(lines[3]["value"].is_null());  // -inf: JSON has no infinity
  db.resume_run(id, 1);
  db.log(id, 2, "train.loss", 0.5);
  db.end_run(id, RunStatus::Finished, "done");
  lines = read_jsonl(jsonl);
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[4]["event"], "resume");
  EXPECT_EQ(lines[4]["from_step"], 1);
  EXPECT_EQ(lines[5]["name"], "train.loss");
  EXPECT_EQ(lines[5]["step"], 2);
  EXPECT_EQ(lines[6]["event"], "end");
  EXPECT_EQ(lines[6]["status"], "finished");
  EXPECT_EQ(lines[6]["message"], "done");

  // A second writer appends to the same file; its lines follow the first's.
  RunDb again(dir.file("runs.sqlite"));
  again.mirror_to_jsonl(jsonl);
  again.begin_run(info("next"));
  EXPECT_EQ(read_jsonl(jsonl).size(), 8u);
}

TEST(RunDb, JsonlMirrorErrorsNameTheFile) {
  test::TempDir dir;
  RunDb db(dir.file("runs.sqlite"));
  const std::string bad = dir.file("no-such-dir/metrics.jsonl");
  const std::string e = error_of([&] { db.mirror_to_jsonl(bad); });
  EXPECT_NE(e.find(bad), std::string::npos) << e;
  LineLog log(dir.file("x.log"));
  EXPECT_THROW(log.append("two\nlines"), std::invalid_argument);
  log.append("one line");
  std::ifstream in(dir.file("x.log"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "one line\n");
}

TEST(RunDb, StatusTransitions) {
  test::TempDir dir;
  RunDb db(dir.file("runs.sqlite"));
  const int64_t id = db.begin_run(info("t"));
  db.log(id, 5, "loss", 0.1);
  db.end_run(id, RunStatus::Finished, "done at step 5");
  EXPECT_EQ(db.pending(), 0u);  // end_run writes the buffer with the status
  RunRecord r = *db.run(id);
  EXPECT_EQ(r.status, RunStatus::Finished);
  EXPECT_EQ(r.message, "done at step 5");
  ASSERT_TRUE(r.ended_at.has_value());
  EXPECT_GE(*r.ended_at, r.started_at);
  EXPECT_EQ(db.metrics(id).size(), 1u);

  const std::string twice = error_of([&] { db.end_run(id, RunStatus::Failed, "x"); });
  EXPECT_NE(twice.find("already finished"), std::string::npos) << twice;
  EXPECT_NE(error_of([&] { db.end_run(id, RunStatus::Running); }).find("cannot be 'running'"), std::string::npos);
  EXPECT_NE(error_of([&] { db.end_run(99, RunStatus::Failed); }).find("no run with id 99"), std::string::npos);

  EXPECT_EQ(db.resume_run(id, 5), RunStatus::Finished);
  r = *db.run(id);
  EXPECT_EQ(r.status, RunStatus::Running);
  EXPECT_FALSE(r.ended_at.has_value());
  EXPECT_EQ(r.message, "");
  for (RunStatus s : {RunStatus::Interrupted, RunStatus::Diverged, RunStatus::Failed}) {
    db.end_run(id, s, to_string(s));
    EXPECT_EQ(db.run(id)->status, s);
    EXPECT_EQ(db.resume_run(id, 5), s);
  }
  EXPECT_EQ(parse_run_status("diverged"), RunStatus::Diverged);
  EXPECT_THROW(parse_run_status("crashed"), RunDbError);
}

TEST(RunDb, ReopenAndResumeAppendsToTheSameRun) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  int64_t id = 0;
  {
    RunDb db(path);
    id = db.begin_run(info("long"));
    for (int s = 1; s <= 10; ++s) db.log(id, s, "loss", 1.0 / s);
    db.flush();
    db.log(id, 11, "loss", 1.0 / 11);  // unflushed: the destructor writes it
  }  // the process "dies" without end_run: the run stays running
  RunDb db(path);
  ASSERT_EQ(db.metrics(id).size(), 11u);
  // Resume from the checkpoint at step 6: steps 7..11 will be logged again.
  EXPECT_EQ(db.resume_run(id, 6), RunStatus::Running);
  std::vector<MetricRow> m = db.metrics(id, "loss");
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m.back().step, 6);
  for (int s = 7; s <= 12; ++s) db.log(id, s, "loss", 0.5 / s);
  db.end_run(id, RunStatus::Finished);
  m = db.metrics(id, "loss");
  ASSERT_EQ(m.size(), 12u);
  for (int s = 1; s <= 12; ++s) EXPECT_EQ(m[static_cast<size_t>(s - 1)].step, s);
  EXPECT_EQ(m[6].value, 0.5 / 7);
  EXPECT_EQ(db.runs().size(), 1u);
  EXPECT_NE(error_of([&] { db.resume_run(42, 0); }).find("no run with id 42"), std::string::npos);
}

TEST(RunDb, FailedFlushWritesNothingAndKeepsItsBuffer) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb db(path);
  const int64_t id = db.begin_run(info("a"));
  db.log(id, 1, "loss", 1.0);
  db.log(id, 1, "boom", 1.0);
  // Another tool's trigger fails the second insert: a failure half-way through the buffer.
  raw_exec(path, "CREATE TRIGGER no_boom BEFORE INSERT ON metrics WHEN NEW.name = 'boom' "
                 "BEGIN SELECT RAISE(ABORT, 'boom refused'); END");
  const std::string e = error_of([&] { db.flush(); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("INSERT INTO metrics"), std::string::npos) << e;
  EXPECT_NE(e.find("boom refused"), std::string::npos) << e;
  EXPECT_TRUE(db.metrics(id).empty());  // the valid row was rolled back with the rest
  EXPECT_EQ(db.pending(), 2u);
  raw_exec(path, "DROP TRIGGER no_boom");
  db.flush();  // retried
  EXPECT_EQ(db.metrics(id).size(), 2u);
}

// A metric of a run that does not exist could never be written: kept in the buffer, it would
// fail every later flush (the foreign key on metrics.run).
TEST(RunDb, AMetricOfAnUnknownRunIsRefusedAndLaterFlushesSucceed) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb db(path);
  const int64_t id = db.begin_run(info("a"));
  db.log(id, 1, "loss", 1.0);
  const std::string e = error_of([&] {
    db.log(id + 41, 1, "val/recall@10", 0.5);
    db.flush();
  });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("no run with id " + std::to_string(id + 41)), std::string::npos) << e;
  EXPECT_NE(e.find("val/recall@10"), std::string::npos) << e;
  db.log(id, 2, "loss", 0.5);
  db.flush();
  EXPECT_EQ(db.pending(), 0u);
  EXPECT_EQ(db.metrics(id, "loss").size(), 2u);
  EXPECT_TRUE(db.metrics(id + 41).empty());

  // A run that another connection began exists all the same.
  RunDb other(path);
  other.log(id, 3, "loss", 0.25);
  other.flush();
  EXPECT_EQ(db.metrics(id, "loss").size(), 3u);
}

TEST(RunDb, FlushDropsTheMetricsOfARunDeletedMeanwhile) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb db(path);
  const int64_t kept = db.begin_run(info("kept")), gone = db.begin_run(info("gone"));
  db.log(kept, 1, "loss", 1.0);
  db.log(gone, 1, "loss", 2.0);
  db.log(gone, 2, "val/recall@10", 0.5);
  raw_exec(path, "DELETE FROM runs WHERE id = " + std::to_string(gone));  // another tool; its foreign keys are off
  const std::string e = error_of([&] { db.flush(); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("no run with id " + std::to_string(gone)), std::string::npos) << e;
  EXPECT_NE(e.find("val/recall@10"), std::string::npos) << e;
  EXPECT_TRUE(db.metrics(kept).empty());  // the failed flush wrote nothing
  EXPECT_EQ(db.pending(), 1u);            // but dropped the rows that can never be written
  db.flush();
  EXPECT_EQ(db.metrics(kept).size(), 1u);
  EXPECT_NE(error_of([&] { db.log(gone, 3, "loss", 1.0); }).find("no run with id " + std::to_string(gone)),
            std::string::npos);
}

TEST(RunDb, WaitsForAndReportsAnotherWritersLock) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb db(path, /*busy_timeout_ms=*/100);
  const int64_t id = db.begin_run(info("a"));
  db.log(id, 1, "loss", 1.0);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  const std::string e = error_of([&] { db.flush(); });
  EXPECT_NE(e.find("BEGIN IMMEDIATE"), std::string::npos) << e;
  EXPECT_NE(e.find("locked"), std::string::npos) << e;
  EXPECT_EQ(db.pending(), 1u);
  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  db.flush();  // retried once the lock is gone
  EXPECT_EQ(db.metrics(id).size(), 1u);
}

TEST(RunDb, RefusesANewerSchemaUntouched) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  { RunDb db(path); }
  raw_exec(path, "PRAGMA user_version = " + std::to_string(RunDb::kSchemaVersion + 1));
  raw_exec(path, "PRAGMA journal_mode = DELETE");  // so that a WAL switch would show in the bytes
  const std::string before = test::read_bytes(path);
  const std::string e = error_of([&] { RunDb db(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("schema version " + std::to_string(RunDb::kSchemaVersion + 1)), std::string::npos) << e;
  EXPECT_NE(e.find("newer melgraph"), std::string::npos) << e;
  EXPECT_EQ(test::read_bytes(path), before);
}

TEST(RunDb, RefusesForeignFiles) {
  test::TempDir dir;
  const std::string other_db = dir.file("other.sqlite");
  raw_exec(other_db, "CREATE TABLE songs (id INTEGER)");
  std::string e = error_of([&] { RunDb db(other_db); });
  EXPECT_NE(e.find("not a melgraph run database"), std::string::npos) << e;

  const std::string text = dir.file("notes.txt");
  std::ofstream(text) << "this is not a database, just a long enough line of text to fill a header ........\n";
  e = error_of([&] { RunDb db(text); });
  EXPECT_NE(e.find(text), std::string::npos) << e;
  EXPECT_NE(e.find("not a database"), std::string::npos) << e;

  e = error_of([&] { RunDb db(dir.file("no/such/dir/runs.sqlite")); });
  EXPECT_NE(e.find("no/such/dir/runs.sqlite: open"), std::string::npos) << e;
}

TEST(RunDb, ReadOnlyReadsWithoutWritingAnything) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  int64_t id = 0;
  {
    RunDb db(path);
    id = db.begin_run(info("archived"));
    db.log(id, 1, "loss", 0.5);
    db.end_run(id, RunStatus::Finished, "done");
  }
  raw_exec(path, "PRAGMA journal_mode = DELETE");  // so that a WAL switch or a journal would show
  const std::string before = test::read_bytes(path);
  {
    const RunDb db(path, RunDb::Access::ReadOnly);
    ASSERT_EQ(db.runs().size(), 1u);
    EXPECT_EQ(db.runs()[0].status, RunStatus::Finished);
    ASSERT_EQ(db.metrics(id).size(), 1u);
    EXPECT_EQ(db.metrics(id)[0].value, 0.5);
  }
  RunDb ro(path, RunDb::Access::ReadOnly);
  EXPECT_NE(error_of([&] { ro.begin_run(info("new")); }).find(path), std::string::npos);
  EXPECT_EQ(test::read_bytes(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));

  const std::string missing = dir.file("missing.sqlite");
  EXPECT_NE(error_of([&] { RunDb db(missing, RunDb::Access::ReadOnly); }).find(missing + ": open"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(missing));

  const std::string empty = dir.file("empty.sqlite");
  std::ofstream(empty).flush();
  const std::string e = error_of([&] { RunDb db(empty, RunDb::Access::ReadOnly); });
  EXPECT_NE(e.find(empty + " has no melgraph schema"), std::string::npos) << e;
  EXPECT_EQ(std::filesystem::file_size(empty), 0u);
}

// An archived run or a read-only mount: a directory this process cannot write, so SQLite cannot
// create the WAL reader's -shm file. Root ignores permissions, so the reader runs in a child
// process that drops to an unprivileged user first (nobody's uid); the directory is the
// parent's, readable by all.
void read_in_a_directory_it_cannot_write(const std::string& path, const std::string& expect_error_part) {
  if (::geteuid() == 0 && ::setuid(65534) != 0) {
    std::fprintf(stderr, "setuid failed\n");
    std::exit(3);
  }
  try {
    const RunDb db(path, RunDb::Access::ReadOnly);
    const auto runs = db.runs();
    const bool ok = expect_error_part.empty() && runs.size() == 1 && db.metrics(runs[0].id).size() == 2;
    std::fprintf(stderr, "read %zu runs\n", runs.size());
    std::exit(ok ? 0 : 1);
  } catch (const RunDbError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(!expect_error_part.empty() && std::string(e.what()).find(expect_error_part) != std::string::npos ? 0 : 2);
  }
}

TEST(RunDb, ReadOnlyReadsARunInADirectoryItCannotWrite) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  test::TempDir dir;
  namespace fs = std::filesystem;
  const fs::path archived = dir.path / "archived", crashed = dir.path / "crashed";
  fs::create_directories(archived);
  fs::create_directories(crashed);
  {
    RunDb db((archived / "runs.sqlite").string());
    const int64_t id = db.begin_run(info("archived"));
    db.log(id, 1, "loss", 1.0);
    db.log(id, 2, "loss", 0.5);
    db.flush();
    // A copy taken while the run is open: the commits are still in the -wal (no checkpoint
    // yet), as a crashed run leaves them.
    raw_exec((archived / "runs.sqlite").string(), "PRAGMA wal_checkpoint(PASSIVE)");  // warm the shm
    fs::copy_file(archived / "runs.sqlite", crashed / "runs.sqlite");
  }
  {  // the crashed copy: the main file and a -wal holding commits, no -shm
    RunDb db((crashed / "runs.sqlite").string());
    raw_exec((crashed / "runs.sqlite").string(), "PRAGMA wal_autocheckpoint = 0");
    db.log(db.runs()[0].id, 3, "loss", 0.25);
    db.flush();
    fs::copy_file(crashed / "runs.sqlite-wal", dir.path / "saved-wal");
  }
  fs::copy_file(dir.path / "saved-wal", crashed / "runs.sqlite-wal");
  ASSERT_FALSE(fs::exists(archived / "runs.sqlite-wal"));
  ASSERT_FALSE(fs::exists(crashed / "runs.sqlite-shm"));
  ASSERT_GT(fs::file_size(crashed / "runs.sqlite-wal"), 0u);
  for (const fs::path& p : {dir.path, archived, crashed})
    fs::permissions(p, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                           fs::perms::others_exec);
  if (::geteuid() != 0) {  // without root, the directories are made read-only for this user
    fs::permissions(archived, fs::perms::owner_write, fs::perm_options::remove);
    fs::permissions(crashed, fs::perms::owner_write, fs::perm_options::remove);
  }
  EXPECT_EXIT(read_in_a_directory_it_cannot_write((archived / "runs.sqlite").string(), ""), testing::ExitedWithCode(0),
              "read 1 runs");
  EXPECT_EXIT(read_in_a_directory_it_cannot_write((crashed / "runs.sqlite").string(), "copy the run directory"),
              testing::ExitedWithCode(0), "-wal holds commits not yet in the database file");
  EXPECT_FALSE(fs::exists(archived / "runs.sqlite-shm"));
  for (const fs::path& p : {archived, crashed}) fs::permissions(p, fs::perms::owner_write, fs::perm_options::add);
}

// The immutable reader opens through a file: URI; characters that a URI gives a meaning
// ('?', '#', '%': "%3F" would read as '?') stay part of the file name.
TEST(SqliteDb, UriParametersKeepOddFileNames) {
  test::TempDir dir;
  for (const std::string name : {"a?b#c.sqlite", "x%3F y.sqlite", "caf\xC3\xA9.sqlite"}) {
    const std::string path = dir.file(name);
    raw_exec(path, "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7)");
    SqliteDb db = SqliteDb::with_uri_parameters(path, SQLITE_OPEN_READONLY, "immutable=1");
    EXPECT_EQ(db.path(), path);
    SqliteStmt st(db, "SELECT v FROM t");
    ASSERT_TRUE(st.step()) << name;
    EXPECT_EQ(st.int64(0), 7) << name;
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator()), 3);
}

TEST(RunDb, AReaderSeesWhatAnOpenWriterCommitted) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb writer(path);
  const int64_t id = writer.begin_run(info("live"));
  writer.log(id, 1, "loss", 1.0);
  writer.flush();
  const RunDb reader(path, RunDb::Access::ReadOnly);
  EXPECT_EQ(reader.metrics(id).size(), 1u);
  writer.log(id, 2, "loss", 0.9);
  writer.flush();
  EXPECT_EQ(reader.metrics(id).size(), 2u);
  EXPECT_EQ(reader.run(id)->status, RunStatus::Running);
}

TEST(RunDb, TwoWritersShareTheFile) {
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb a(path), b(path);
  const int64_t ia = a.begin_run(info("a")), ib = b.begin_run(info("b"));
  EXPECT_NE(ia, ib);
  a.log(ia, 1, "loss", 1.0);
  b.log(ib, 1, "loss", 2.0);
  b.flush();
  a.flush();
  EXPECT_EQ(a.metrics(ib).size(), 1u);
  EXPECT_EQ(b.metrics(ia).size(), 1u);
}

TEST(RunDb, PythonSqlite3ReadsItWhileTheRunIsOpen) {
  const std::string py = test::python_exe();
  std::string out;
  if (test::run_command(py + " -c 'import sqlite3'", &out) != 0)
    GTEST_SKIP() << py << " cannot import sqlite3 (Debian's python3 has it): " << out;
  test::TempDir dir;
  const std::string path = dir.file("runs.sqlite");
  RunDb db(path);
  const int64_t id = db.begin_run(info("py", 5));
  for (int s = 1; s <= 4; ++s) db.log(id, s, "loss", 0.25 * s);
  db.log(id, 4, "val/recall@10", std::numeric_limits<double>::quiet_NaN());
  db.flush();
  const std::string script = dir.file("read.py");
  std::ofstream(script) << "import sqlite3, sys\n"
                           "con = sqlite3.connect(sys.argv[1])\n"
                           "print(con.execute('PRAGMA user_version').fetchone()[0])\n"
                           "print(con.execute('PRAGMA journal_mode').fetchone()[0])\n"
                           "print(*con.execute('SELECT id, name, seed, status, git_commit FROM runs').fetchone())\n"
                           "print(*con.execute(\"SELECT count(*), sum(value), max(step) FROM metrics WHERE name = 'loss'\").fetchone())\n"
                           "print(con.execute(\"SELECT value FROM metrics WHERE name = 'val/recall@10'\").fetchone()[0])\n";
  ASSERT_EQ(test::run_command(py + " " + script + " " + path, &out), 0) << out;
  const std::string want = std::to_string(RunDb::kSchemaVersion) + "\nwal\n1 py 5 running " + MELGRAPH_GIT_COMMIT +
                           "\n4 2.5 4\nNone\n";
  EXPECT_EQ(out, want);
}

}  // namespace
}  // namespace mg
