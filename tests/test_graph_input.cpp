// The preference graph's input layer: edge-list and catalog parsing, every bad-input case, gzip.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "graph/catalog.h"
#include "graph/edge_list_io.h"
#include "graph/text_input.h"
#include "tests/test_support.h"

namespace mg::graph {
namespace {

using test::TempDir;

EdgeList parse(const std::string& text, EdgeLoadOptions opt = {}) {
  std::istringstream in(text);
  return parse_edge_list(in, "edges.csv", opt);
}

// The GraphInputError message of parsing `text`, or "" when it parses.
std::string parse_error(const std::string& text, EdgeLoadOptions opt = {}) {
  try {
    parse(text, opt);
  } catch (const GraphInputError& e) {
    return e.what();
  }
  return "";
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void write_gzip(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// Edges as "src>dst" strings, for order-sensitive comparison.
std::vector<std::string> edges_of(const EdgeList& el) {
  std::vector<std::string> out;
  for (int64_t e = 0; e < el.num_edges(); ++e)
    out.push_back(el.ids[static_cast<size_t>(el.src[static_cast<size_t>(e)])] + ">" +
                  el.ids[static_cast<size_t>(el.dst[static_cast<size_t>(e)])]);
  return out;
}

// ---- well-formed input ------------------------------------------------------------------

TEST(EdgeListParse, CommentsBlankCrlfAndWhitespace) {
  const auto el = parse("# a comment\r\n\r\n  a , b \r\n   # indented comment\n\t\nb,c\r\nc,a");
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"a>b", "b>c", "c>a"}));
  EXPECT_EQ(el.ids, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(el.stats.lines, 7);
  EXPECT_EQ(el.stats.comments, 2);
  EXPECT_EQ(el.stats.blank, 2);
  EXPECT_EQ(el.stats.edges_read, 3);
  EXPECT_FALSE(el.stats.header);
  EXPECT_EQ(el.stats.delimiter, ',');
  EXPECT_TRUE(el.weight.empty());
}

TEST(EdgeListParse, TabsDetected) {
  const auto el = parse("x y\tz w\nz w\tq,1\n");  // spaces and commas are part of ids in TSV
  EXPECT_EQ(el.stats.delimiter, '\t');
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"x y>z w", "z w>q,1"}));
}

// Semicolons and pipes are detected too (the AllMusic influence graph is ';'-separated); a
// comma inside a ';'-separated id does not fool it, and a header with a weight column still
// reads as comma-separated.
TEST(EdgeListParse, SemicolonAndPipeDetected) {
  const auto sc = parse("Crosby, Stills & Nash;Neil Young\nNeil Young;Pearl Jam;2\n");
  EXPECT_EQ(sc.stats.delimiter, ';');
  EXPECT_EQ(edges_of(sc), (std::vector<std::string>{"Crosby, Stills & Nash>Neil Young", "Neil Young>Pearl Jam"}));
  const auto sch = parse("source;target\nx;y\n");
  EXPECT_EQ(sch.stats.delimiter, ';');
  EXPECT_TRUE(sch.stats.header);
  const auto pipe = parse("a|b\nb|c|0.5\n");
  EXPECT_EQ(pipe.stats.delimiter, '|');
  EXPECT_EQ(edges_of(pipe), (std::vector<std::string>{"a>b", "b>c"}));
  const auto header = parse("src,dst,weight\na,b,1\n");
  EXPECT_EQ(header.stats.delimiter, ',');
  EXPECT_TRUE(header.stats.header);
  // Nothing splits the first line into src, dst: the error names the file, the line and what
  // was tried.
  const std::string msg = parse_error("# spaces\na b\nb c\n");
  EXPECT_NE(msg.find("edges.csv:2: cannot tell the delimiter"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--delimiter"), std::string::npos) << msg;
  // With --skip-bad-lines the undetectable line is skipped and the next one decides.
  EdgeLoadOptions skip;
  skip.skip_bad_lines = true;
  const auto el = parse("a b c d\nx;y\n", skip);
  EXPECT_EQ(el.stats.bad_lines, 1);
  EXPECT_EQ(el.stats.delimiter, ';');
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"x>y"}));
}

TEST(EdgeListParse, ExplicitDelimiter) {
  EdgeLoadOptions opt;
  opt.delimiter = ';';
  const auto el = parse("a;b,c\nb,c;d\n", opt);
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"a>b,c", "b,c>d"}));
  EXPECT_EQ(el.stats.delimiter, ';');
  opt.delimiter = '"';
  EXPECT_NE(parse_error("a;b\n", opt).find("invalid delimiter"), std::string::npos);
}

TEST(EdgeListParse, QuotedFields) {
  const auto el = parse("\"Smith, John\",\"say \"\"hi\"\"\"\n  \" padded \" , plain\n\"a\",\"\"\"\"");
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"Smith, John>say \"hi\"", " padded >plain", "a>\""}));
}

TEST(EdgeListParse, HeaderAutoDetection) {
  for (const char* h : {"src,dst\n", "Source,Target\n", "FROM,to\n", "a,b,weight\n", "\"src\",\"dst\",\"w\"\n"}) {
    const auto el = parse(std::string("# c\n") + h + "x,y\n");
    EXPECT_TRUE(el.stats.header) << h;
    EXPECT_EQ(edges_of(el), (std::vector<std::string>{"x>y"})) << h;
  }
  // A first line of ordinary ids, or with a numeric third column, is data.
  for (const char* first : {"src,y\n", "from,y,2.5\n", "a,b,1e3\n"}) {
    const auto el = parse(std::string(first) + "x,z\n");
    EXPECT_FALSE(el.stats.header) << first;
    EXPECT_EQ(el.num_edges(), 2) << first;
  }
}

TEST(EdgeListParse, HeaderExplicit) {
  EdgeLoadOptions opt;
  opt.header = HeaderMode::Yes;
  auto el = parse("p,q\nx,y\n", opt);  // not header-like, but told so
  EXPECT_TRUE(el.stats.header);
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"x>y"}));
  opt.header = HeaderMode::No;
  el = parse("src,dst\nx,y\n", opt);  // header-like, but told it is data
  EXPECT_FALSE(el.stats.header);
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"src>dst", "x>y"}));
}

TEST(EdgeListParse, Weights) {
  // (negative weights are refused: MalformedLinesNameFileLineAndText)
  auto el = parse("src,dst,weight\na,b,0.5\nb,c,+2\nc,d\na,d,1.25e-1\nd,e,\n");
  ASSERT_EQ(el.num_edges(), 5);
  EXPECT_EQ(el.weight, (std::vector<float>{0.5f, 2.0f, 1.0f, 0.125f, 1.0f}));
  // Unweighted lines before the first weight count as 1.
  el = parse("a,b\nb,c,3\n");
  EXPECT_EQ(el.weight, (std::vector<float>{1.0f, 3.0f}));
  // weighted = false: checked, then ignored.
  EdgeLoadOptions opt;
  opt.weighted = false;
  el = parse("a,b,3\nb,c,4\n", opt);
  EXPECT_TRUE(el.weight.empty());
  EXPECT_EQ(el.num_edges(), 2);
  EXPECT_NE(parse_error("a,b,3\nb,c,x\n", opt).find("edges.csv:2: weight 'x'"), std::string::npos);
}

TEST(EdgeListParse, SelfLoopsAndDuplicatesCounted) {
  const auto el = parse("a,b,2\na,a\nb,a\na,b,7\nc,c\nb,a\n");
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"a>b", "b>a"}));
  EXPECT_EQ(el.weight, (std::vector<float>{2.0f, 1.0f}));  // the first occurrence's weight is kept
  EXPECT_EQ(el.stats.edges_read, 6);
  EXPECT_EQ(el.stats.self_loops, 2);
  EXPECT_EQ(el.stats.duplicates, 2);
  EXPECT_EQ(el.num_nodes(), 3);  // c exists only through its self-loop, but it is a node
}

TEST(EdgeListParse, EmptyInputsAreNotErrors) {
  struct Case {
    const char* text;
    int64_t lines, comments, blank;
    bool header;
  };
  for (const Case& c : {Case{"", 0, 0, 0, false}, Case{"src,dst,weight\n", 1, 0, 0, true},
                        Case{"# only\n  # comments\n\n", 3, 2, 1, false}, Case{"\n\r\n  \n", 3, 0, 3, false}}) {
    const auto el = parse(c.text);
    EXPECT_EQ(el.num_edges(), 0) << c.text;
    EXPECT_EQ(el.num_nodes(), 0) << c.text;
    EXPECT_EQ(el.stats.lines, c.lines) << c.text;
    EXPECT_EQ(el.stats.comments, c.comments) << c.text;
    EXPECT_EQ(el.stats.blank, c.blank) << c.text;
    EXPECT_EQ(el.stats.header, c.header) << c.text;
  }
  // Only self-loops: edges were read, none kept.
  const auto el = parse("a,a\nb,b\n");
  EXPECT_EQ(el.num_edges(), 0);
  EXPECT_EQ(el.stats.edges_read, 2);
  EXPECT_EQ(el.stats.self_loops, 2);
}

TEST(EdgeListParse, LongLinesAndSmallChunksAcrossBoundaries) {
  // Many lines with long ids: the reader's buffer refills mid-line many times.
  std::mt19937 rng(11);
  std::string text;
  std::vector<std::string> want;
  for (int i = 0; i < 3001; ++i) {
    const std::string a = "node" + std::to_string(rng() % 997) + std::string(rng() % 700, 'x');
    const std::string b = "node" + std::to_string(rng() % 991) + std::string(rng() % 5, 'y');
    text += a + "," + b + (i % 3 == 0 ? "\r\n" : "\n");
    want.push_back(a + ">" + b);
  }
  const auto el = parse(text);
  EXPECT_EQ(el.stats.edges_read, 3001);
  const auto got = edges_of(el);
  // Compare against the first-occurrence list (no self-loops possible: the suffixes differ).
  std::vector<std::string> dedup;
  for (const auto& e : want)
    if (std::find(dedup.begin(), dedup.end(), e) == dedup.end()) dedup.push_back(e);
  EXPECT_EQ(got, dedup);
}

// ---- malformed lines ----------------------------------------------------------------------

struct BadLine {
  std::string text;       // the whole input
  std::string expected;   // substring of the message, "edges.csv:<line>: <what>: <text>"
};

TEST(EdgeListParse, MalformedLinesNameFileLineAndText) {
  const std::vector<BadLine> cases = {
      {"a,b\njustone\n", "edges.csv:2: 1 field, expected 2 or 3 (src, dst[, weight]): justone"},
      {"a,b\n# c\n\nb,c,1,2\n", "edges.csv:4: more than 3 fields, expected 2 or 3 (src, dst[, weight]): b,c,1,2"},
      {"a,b\n ,c\n", "edges.csv:2: empty source id:  ,c"},
      {"a,b\r\nc,  \r\n", "edges.csv:2: empty destination id: c,   (use"},
      {"a,b\nc,d,abc\n", "edges.csv:2: weight 'abc' is not a finite number: c,d,abc"},
      {"a,b\nc,d,1.5x\n", "edges.csv:2: weight '1.5x' is not a finite number"},
      {"a,b\nc,d,inf\n", "edges.csv:2: weight 'inf' is not a finite number"},
      // Issue 17, D15: a negative weight was accepted silently.
      {"a,b\nc,d,-0.5\n", "edges.csv:2: weight '-0.5' is negative (weights are 0 or more): c,d,-0.5"},
      {"a,b\nc,d,nan\n", "edges.csv:2: weight 'nan' is not a finite number"},
      {"a,b\nc,d,1e60\n", "edges.csv:2: weight '1e60' is not a finite number"},  // overflows float
      {"a,b\nc,d,+-1\n", "edges.csv:2: weight '+-1'"},
      {"a,b\n\"c,d\n", "edges.csv:2: unterminated quoted field: \"c,d"},
      {"a,b\n\"c\"x,d\n", "edges.csv:2: text after a closing quote: \"c\"x,d"},
      {"a\tb\nc\t\td\n", "edges.csv:2: empty destination id"},
  };
  for (const auto& c : cases) {
    const std::string msg = parse_error(c.text);
    EXPECT_NE(msg.find(c.expected), std::string::npos) << "input: " << c.text << "\nmessage: " << msg;
    EXPECT_NE(msg.find("--skip-bad-lines"), std::string::npos) << msg;
  }
}

// Ids are UTF-8 as the catalog's are: a Latin-1 edge list would otherwise give ids that match
// no UTF-8 catalog row and reach JSON output as bytes no reader takes. Valid multi-byte ids
// (and a quoted one holding the delimiter) pass; the message names the field, byte and fix.
TEST(EdgeListParse, IdsMustBeUtf8) {
  const auto el = parse("Caf\xc3\xa9,\"Sigur R\xc3\xb3s, live\"\n\xe2\x99\xaa,\xf0\x9f\x8e\xb5\n");
  EXPECT_EQ(el.ids,
            (std::vector<std::string>{"Caf\xc3\xa9", "Sigur R\xc3\xb3s, live", "\xe2\x99\xaa", "\xf0\x9f\x8e\xb5"}));
  std::string msg = parse_error("a,b\ncaf\xe9,b\n");
  EXPECT_NE(msg.find("edges.csv:2: source id is not UTF-8 (byte 0xE9 at offset 3); the edge list is read as UTF-8: "
                     "convert it, e.g. with iconv -f latin1 -t utf-8: caf\\xE9,b"),
            std::string::npos)
      << msg;
  msg = parse_error("a,b\nb,\xed\xa0\x80x,2\n");  // an encoded surrogate is not UTF-8 either
  EXPECT_NE(msg.find("edges.csv:2: destination id is not UTF-8 (byte 0xED at offset 0)"), std::string::npos) << msg;
  EdgeLoadOptions opt;
  opt.skip_bad_lines = true;
  const auto skipped = parse("a,b\nd\xe9j\xe0,b\nb,c\n", opt);
  EXPECT_EQ(skipped.stats.bad_lines, 1);
  EXPECT_EQ(skipped.ids, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(EdgeListParse, LongBadLineTruncatedTo200Chars) {
  const std::string line = std::string(300, 'z');
  const std::string msg = parse_error("a,b\n" + line + "\n");
  EXPECT_NE(msg.find("edges.csv:2: 1 field"), std::string::npos);
  EXPECT_NE(msg.find(std::string(200, 'z') + "..."), std::string::npos);
  EXPECT_EQ(msg.find(std::string(201, 'z')), std::string::npos);
}

TEST(EdgeListParse, SkipBadLinesCounts) {
  EdgeLoadOptions opt;
  opt.skip_bad_lines = true;
  const auto el = parse("src,dst\na,b\none\nc,d,e,f\n,x\nb,c,zz\n\"q,r\nb,c\n", opt);
  EXPECT_EQ(el.stats.bad_lines, 5);
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"a>b", "b>c"}));
  EXPECT_EQ(el.stats.edges_read, 2);
  EXPECT_EQ(el.ids, (std::vector<std::string>{"a", "b", "c"}));  // bad lines intern nothing
}

// ---- files and gzip -----------------------------------------------------------------------

std::string sample_edges() {
  std::mt19937 rng(5);
  std::string text = "# generated\nsource\ttarget\tweight\n";
  for (int i = 0; i < 20011; ++i) {
    // Appends piecewise: GCC 12 gives a false -Wrestrict on `"n" + std::to_string(...)`.
    text.append("n").append(std::to_string(rng() % 1500));
    text.append("\tn").append(std::to_string(rng() % 1500));
    text.append("\t").append(std::to_string(static_cast<double>(rng() % 1000) / 8.0)).append("\n");
  }
  return text;
}

void expect_same(const EdgeList& a, const EdgeList& b) {
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.src, b.src);
  EXPECT_EQ(a.dst, b.dst);
  EXPECT_EQ(a.weight, b.weight);
  EXPECT_EQ(a.stats.lines, b.stats.lines);
  EXPECT_EQ(a.stats.edges_read, b.stats.edges_read);
  EXPECT_EQ(a.stats.duplicates, b.stats.duplicates);
  EXPECT_EQ(a.stats.self_loops, b.stats.self_loops);
  EXPECT_EQ(a.stats.header, b.stats.header);
  EXPECT_EQ(a.stats.delimiter, b.stats.delimiter);
}

TEST(EdgeListFile, GzipReadsLikePlain) {
  TempDir dir;
  const std::string text = sample_edges();
  write_file(dir.file("e.tsv"), text);
  write_gzip(dir.file("e.tsv.gz"), text);
  write_gzip(dir.file("e.dat"), text);  // gzip without a .gz name: detected by its magic bytes
  const auto plain = load_edge_list(dir.file("e.tsv"));
  const auto gz = load_edge_list(dir.file("e.tsv.gz"));
  const auto gz2 = load_edge_list(dir.file("e.dat"));
  EXPECT_FALSE(plain.stats.gzip);
  EXPECT_TRUE(gz.stats.gzip);
  EXPECT_TRUE(gz2.stats.gzip);
  EXPECT_GT(plain.num_edges(), 15000);
  EXPECT_TRUE(plain.stats.header);
  EXPECT_EQ(plain.stats.delimiter, '\t');
  expect_same(plain, gz);
  expect_same(plain, gz2);
  // And the same as the in-memory parser.
  std::istringstream in(text);
  expect_same(plain, parse_edge_list(in, "mem"));
}

TEST(EdgeListFile, GzNameButPlainContentReadsAsPlain) {
  TempDir dir;
  write_file(dir.file("e.csv.gz"), "a,b\nb,c\n");
  const auto el = load_edge_list(dir.file("e.csv.gz"));
  EXPECT_FALSE(el.stats.gzip);
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"a>b", "b>c"}));
}

std::string load_error(const std::string& path, EdgeLoadOptions opt = {}) {
  try {
    load_edge_list(path, opt);
  } catch (const GraphInputError& e) {
    return e.what();
  }
  return "";
}

TEST(EdgeListFile, TruncatedGzipIsAnError) {
  TempDir dir;
  write_gzip(dir.file("full.gz"), sample_edges());
  const std::string bytes = test::read_bytes(dir.file("full.gz"));
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t keep : {bytes.size() / 2, bytes.size() - 4, size_t{2}}) {
    const std::string path = dir.file("cut" + std::to_string(keep) + ".gz");
    write_file(path, bytes.substr(0, keep));
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << keep << ": " << msg;
    EXPECT_NE(msg.find("truncated gzip"), std::string::npos) << keep << ": " << msg;
  }
}

TEST(EdgeListFile, CorruptGzipIsAnError) {
  TempDir dir;
  write_gzip(dir.file("full.gz"), sample_edges());
  std::string bytes = test::read_bytes(dir.file("full.gz"));
  for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64; ++i) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
  write_file(dir.file("bad.gz"), bytes);
  const std::string msg = load_error(dir.file("bad.gz"));
  EXPECT_NE(msg.find(dir.file("bad.gz")), std::string::npos) << msg;
  EXPECT_NE(msg.find("gzip"), std::string::npos) << msg;
}

TEST(EdgeListFile, BadLineInGzipNamesFileAndLine) {
  TempDir dir;
  write_gzip(dir.file("e.gz"), "a,b\n#\nc\n");
  const std::string msg = load_error(dir.file("e.gz"));
  EXPECT_NE(msg.find(dir.file("e.gz") + ":3: 1 field"), std::string::npos) << msg;
}

TEST(EdgeListFile, MissingFileOrDirectory) {
  TempDir dir;
  std::string msg = load_error(dir.file("nope.csv"));
  EXPECT_NE(msg.find(dir.file("nope.csv")), std::string::npos) << msg;
  EXPECT_NE(msg.find("no such file"), std::string::npos) << msg;
  msg = load_error(dir.path.string());
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
}

TEST(EdgeListFile, EmptyFile) {
  TempDir dir;
  write_file(dir.file("empty.csv"), "");
  const auto el = load_edge_list(dir.file("empty.csv"));
  EXPECT_EQ(el.num_edges(), 0);
  EXPECT_EQ(el.stats.lines, 0);
  write_gzip(dir.file("empty.gz"), "");
  const auto gz = load_edge_list(dir.file("empty.gz"));
  EXPECT_TRUE(gz.stats.gzip);
  EXPECT_EQ(gz.num_edges(), 0);
}

TEST(EdgeListFile, Utf8BomIgnored) {
  TempDir dir;
  write_file(dir.file("bom.csv"), "\xEF\xBB\xBFsrc,dst\nä,b\n");
  const auto el = load_edge_list(dir.file("bom.csv"));
  EXPECT_TRUE(el.stats.header);
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"ä>b"}));
}

// ---- string_view interning ----------------------------------------------------------------

TEST(EdgeListIntern, StringViewLookupAndOrder) {
  EdgeList el;
  EXPECT_EQ(el.intern(std::string_view("b")), 0);
  EXPECT_EQ(el.intern("a"), 1);
  EXPECT_EQ(el.intern(std::string("b")), 0);
  EXPECT_EQ(el.index.find(std::string_view("a"))->second, 1);
  el.add_edge("a", "c");
  EXPECT_EQ(el.ids, (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_EQ(edges_of(el), (std::vector<std::string>{"a>c"}));
}

// ---- catalog ------------------------------------------------------------------------------

std::string catalog_error(const std::string& path, bool skip = false) {
  try {
    load_catalog(path, skip);
  } catch (const GraphInputError& e) {
    return e.what();
  }
  return "";
}

TEST(Catalog, ColumnsPathsAndExtras) {
  TempDir dir;
  std::filesystem::create_directories(dir.path / "sub");
  const std::string cat = (dir.path / "sub" / "cat.csv").string();
  write_file(cat,
             "# music\r\ntitle,PATH,Id,artist\r\n\"Song, One\",audio/1.wav,s1,Band\r\n"
             "Two,/abs/2.flac,s2,\"The \"\"B\"\"\"\r\n\r\nThree,../up/3.mp3,s3,\r\n");
  const Catalog c = load_catalog(cat);
  EXPECT_EQ(c.source, cat);
  EXPECT_EQ(c.columns, (std::vector<std::string>{"title", "PATH", "Id", "artist"}));
  EXPECT_EQ(c.extra_columns, (std::vector<std::string>{"title", "artist"}));
  ASSERT_EQ(c.items.size(), 3u);
  EXPECT_EQ(c.items[0].id, "s1");
  EXPECT_EQ(c.items[0].path, (dir.path / "sub" / "audio" / "1.wav").string());
  EXPECT_EQ(c.items[0].extra, (std::vector<std::string>{"Song, One", "Band"}));
  EXPECT_EQ(c.items[1].path, "/abs/2.flac");
  EXPECT_EQ(c.items[1].extra, (std::vector<std::string>{"Two", "The \"B\""}));
  EXPECT_EQ(c.items[2].path, (dir.path / "up" / "3.mp3").string());
  EXPECT_EQ(c.items[2].extra, (std::vector<std::string>{"Three", ""}));
  EXPECT_EQ(c.index.at("s2"), 1);
  EXPECT_EQ(c.bad_lines, 0);
  EXPECT_EQ(c.duplicates, 0);
}

// RFC 4180 as Python's csv module writes it (tests/data/graph/pycsv_catalog.csv: a UTF-8
// byte-order mark, CRLF, doubled quotes, a title with line breaks in it): every record read,
// a line break inside a field kept as '\n'; the records after a multi-line one keep their
// line numbers in messages, and a quote never closed names the line it opened on.
TEST(Catalog, Rfc4180RecordsSpanLines) {
  const Catalog c = load_catalog(std::string(MELGRAPH_TEST_DATA_DIR) + "/graph/pycsv_catalog.csv");
  EXPECT_EQ(c.columns, (std::vector<std::string>{"id", "path", "title"}));
  ASSERT_EQ(c.items.size(), 6u);
  EXPECT_EQ(c.items[1].extra[0], "The \"B\" side");
  EXPECT_EQ(c.items[2].id, "c");
  EXPECT_EQ(c.items[2].extra[0], "Song C,\nlive\nat home");
  EXPECT_EQ(c.items[3].id, "d");
  EXPECT_EQ(c.items[4].extra[0], "");
  TempDir dir;
  const std::string p = dir.file("c.csv");
  write_file(p, "id,path,title\na,a.wav,\"two\nlines\"\nb,b.wav\n");
  EXPECT_NE(catalog_error(p).find(p + ":4: 2 fields, the header has 3: b,b.wav"), std::string::npos)
      << catalog_error(p);
  write_file(p, "id,path,title\na,a.wav,A\nb,b.wav,\"never closed\nc,c.wav,C\n");
  EXPECT_NE(catalog_error(p).find(p + ":3: unterminated quoted field: b,b.wav,\"never closed"), std::string::npos)
      << catalog_error(p);
  const Catalog skipped = load_catalog(p, true);
  EXPECT_EQ(skipped.items.size(), 1u);
  EXPECT_EQ(skipped.bad_lines, 2) << "the open quote swallowed row c: both lines counted";
}

TEST(Catalog, RelativeToCatalogNotCwd) {
  TempDir dir;
  write_file(dir.file("c.csv"), "id,path\nx,x.wav\n");
  const Catalog c = load_catalog(dir.file("c.csv"));
  ASSERT_EQ(c.items.size(), 1u);
  EXPECT_EQ(c.items[0].path, dir.file("x.wav"));
}

TEST(Catalog, MissingRequiredColumns) {
  TempDir dir;
  write_file(dir.file("noid.csv"), "path,title\na.wav,A\n");
  write_file(dir.file("nopath.csv"), "# c\nid,title\na,A\n");
  std::string msg = catalog_error(dir.file("noid.csv"));
  EXPECT_NE(msg.find(dir.file("noid.csv")), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing required column 'id'"), std::string::npos) << msg;
  msg = catalog_error(dir.file("nopath.csv"), true);  // not skippable
  EXPECT_NE(msg.find("missing required column 'path'"), std::string::npos) << msg;
}

// Issue 17, D13: a binary file given as a catalog gets a message without its raw bytes:
// control bytes and broken UTF-8 are shown as \xNN (valid UTF-8 stays as it is).
TEST(Catalog, BinaryBytesAreEscapedInMessages) {
  TempDir dir;
  write_file(dir.file("bin.csv"), std::string("\x89PNG\r\x1a\x00\x07,\xff\xfe\xc3\xa9t\xc3\xa9\n", 17));
  const std::string msg = catalog_error(dir.file("bin.csv"));
  EXPECT_NE(msg.find("missing required column 'id'"), std::string::npos) << msg;
  for (unsigned char c : msg)
    EXPECT_TRUE((c >= 0x20 && c != 0x7f) || c == '\t') << "raw control byte " << int(c) << " in: " << msg;
  EXPECT_NE(msg.find("\\x89PNG\\x0D\\x1A\\x00\\x07"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\\xFF\\xFE\xc3\xa9t\xc3\xa9"), std::string::npos) << msg;
  EXPECT_EQ(detail::printable(std::string_view("\x01\tok\xe2\x82", 6)), "\\x01\tok\\xE2\\x82");
  EXPECT_EQ(detail::printable(std::string(300, 'a'), 10), std::string(10, 'a') + "...");
}

// A Latin-1 catalog is stopped where it is read, with the line, the column, the byte and the
// fix: its ids and titles would otherwise reach JSON output and the index's --where filters
// as bytes no UTF-8 reader takes. A path is a file name, any bytes on Linux: kept as it is.
TEST(Catalog, TextColumnsMustBeUtf8PathsNeedNot) {
  TempDir dir;
  const std::string p = dir.file("c.csv");
  write_file(p, "id,path,title,album\na,caf\xe9.wav,Caf\xc3\xa9,A\nb,b.wav,d\xe9j\xe0 vu,B\nc,c.wav,C,\xe8te\n");
  std::string msg = catalog_error(p);
  EXPECT_NE(msg.find(p + ":3: column 'title' is not UTF-8 (byte 0xE9 at offset 1)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("iconv -f latin1 -t utf-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("d\\xE9j\\xE0 vu"), std::string::npos) << "the row, escaped: " << msg;
  const Catalog c = load_catalog(p, true);
  ASSERT_EQ(c.items.size(), 1u);
  EXPECT_EQ(c.bad_lines, 2) << "rows b (title) and c (album) skipped and counted";
  EXPECT_EQ(c.items[0].path, dir.file("caf\xe9.wav"));
  EXPECT_EQ(c.items[0].extra[0], "Caf\xc3\xa9");
  write_file(p, "id,path,title\n\xff,x.wav,X\n");
  msg = catalog_error(p);
  EXPECT_NE(msg.find(p + ":2: column 'id' is not UTF-8 (byte 0xFF at offset 0)"), std::string::npos) << msg;
  write_file(p, "id,path,ti\xf4tle\na,a.wav,A\n");
  msg = catalog_error(p, true);  // a header is not a row: never skipped
  EXPECT_NE(msg.find(p + ":1: header column 3's name is not UTF-8 (byte 0xF4 at offset 2)"), std::string::npos) << msg;
}

TEST(Catalog, BadHeaders) {
  TempDir dir;
  write_file(dir.file("empty.csv"), "# nothing\n\n");
  write_file(dir.file("dup.csv"), "id,path,ID\n");
  write_file(dir.file("noname.csv"), "id,,path\n");
  EXPECT_NE(catalog_error(dir.file("empty.csv")).find("empty, expected a header row"), std::string::npos);
  EXPECT_NE(catalog_error(dir.file("dup.csv")).find(":1: header column 'id' appears twice"), std::string::npos);
  EXPECT_NE(catalog_error(dir.file("noname.csv")).find(":1: header column 2 has no name"), std::string::npos);
  EXPECT_NE(catalog_error(dir.file("missing.csv")).find("no such file"), std::string::npos);
  // Header only: a valid, empty catalog.
  write_file(dir.file("hdr.csv"), "id,path\n");
  EXPECT_TRUE(load_catalog(dir.file("hdr.csv")).items.empty());
}

TEST(Catalog, DuplicateIdsAndBadRows) {
  TempDir dir;
  const std::string p = dir.file("c.csv");
  write_file(p, "id,path,title\na,a.wav,A\nb,b.wav,B\na,other.wav,A2\nc,c.wav\n,d.wav,D\ne,,E\nf,f.wav,F,x\ng,g.wav,G\n");
  std::string msg = catalog_error(p);
  EXPECT_NE(msg.find(p + ":4: duplicate id 'a': a,other.wav,A2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--skip-bad-lines"), std::string::npos) << msg;
  const Catalog c = load_catalog(p, true);
  EXPECT_EQ(c.duplicates, 1);
  EXPECT_EQ(c.bad_lines, 4);
  ASSERT_EQ(c.items.size(), 3u);
  EXPECT_EQ(c.items[0].path, dir.file("a.wav"));  // the first row of a duplicated id wins
  EXPECT_EQ(c.items[2].id, "g");
  // Each kind of bad row, on its own.
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"c,c.wav", ":2: 2 fields, the header has 3: c,c.wav"},
      {",d.wav,D", ":2: empty id"},
      {"e,,E", ":2: empty path"},
      {"f,f.wav,F,x", ":2: more than 3 fields, the header has 3"},
      {"\"f,f.wav,F", ":2: unterminated quoted field"},
  };
  for (const auto& [row, want] : rows) {
    write_file(p, "id,path,title\n" + row + "\n");
    msg = catalog_error(p);
    EXPECT_NE(msg.find(p + want), std::string::npos) << row << ": " << msg;
  }
}

TEST(Catalog, AudioCoverage) {
  TempDir dir;
  write_file(dir.file("c.csv"), "id,path\nb,b.wav\nz,z.wav\nd,d.wav\ny,y.wav\n");
  const Catalog cat = load_catalog(dir.file("c.csv"));
  const auto el = parse("a,b\nb,c\nc,d\n");  // nodes a b c d
  const auto cov = audio_coverage(el, cat);
  EXPECT_EQ(cov.has_audio, (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(cov.item_of_node, (std::vector<int64_t>{-1, 0, -1, 2}));
  EXPECT_EQ(cov.nodes_without_audio, 2);
  EXPECT_EQ(cov.items_not_in_graph, 2);
  EXPECT_EQ(audio_mask(el, cat), cov.has_audio);
}

}  // namespace
}  // namespace mg::graph
