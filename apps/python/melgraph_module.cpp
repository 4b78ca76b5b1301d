// The `melgraph` Python module (pybind11): the exported index, audio embedding, checkpoints and
// run metrics from Python, over the same library the command line uses. Thin: every operation
// is one call into engine/ (index_query.h, ann.h, embedder.h, checkpoint.h, run_db.h).
//
//   import melgraph
//   ix = melgraph.Index("index.sqlite")          # ix.ids, ix.vectors (numpy, no copy), ix.meta
//   ix.query("t0042", k=5, exclude_same="artist", where={"style": "folk"})
//   ix.query_batch(["t0042", "t0107"], k=5)      # or a [Q, dim] float array
//   v = melgraph.embed("song.mp3", "run/best.safetensors")
//   params = melgraph.load_checkpoint("run/best.safetensors")   # name -> numpy array
//   rows = melgraph.runs("run/runs.sqlite")       # metrics as dicts
//
// Errors on bad input (unknown id, missing file, stale ANN file) raise melgraph.Error (a
// ValueError) with the engine's message.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/audio/decode.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/embed/embedder.h"
#include "engine/index/ann.h"
#include "engine/index/index_format.h"
#include "engine/index/index_query.h"
#include "engine/io/safetensors.h"
#include "engine/model.h"
#include "engine/train/run_db.h"

namespace py = pybind11;

namespace mg::python {
namespace {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

py::object text_or_none(const std::optional<std::string>& s) { return s ? py::object(py::str(*s)) : py::none(); }

py::list hits_list(const index::Index& x, const std::vector<index::QueryHit>& hits) {
  py::list out;
  for (size_t i = 0; i < hits.size(); ++i) {
    const index::IndexItem& it = x.items[static_cast<size_t>(hits[i].row)];
    py::dict d;
    d["rank"] = i + 1;
    d["id"] = it.id;
    d["title"] = text_or_none(it.title);
    d["artist"] = text_or_none(it.artist);
    d["similarity"] = hits[i].similarity;
    d["path"] = it.path;
    out.append(d);
  }
  return out;
}

index::QueryFilter make_filter(const std::optional<std::map<std::string, std::string>>& where,
                               const std::optional<std::string>& exclude_same) {
  index::QueryFilter f;
  if (where)
    for (const auto& [column, value] : *where) f.where.emplace_back(column, value);
  if (exclude_same) f.exclude_same = *exclude_same;
  return f;
}

// An index file, read once; queries run on the CPU backend (the Python process's threads).
class PyIndex {
 public:
  PyIndex(const std::string& path, bool exact, int threads)
      : x_(std::make_shared<index::Index>(index::read_index(path))), be_(make_cpu_backend(threads)) {
    if (!exact) ann_ = index::AnnSearcher::open(*x_, path);
  }

  int64_t size() const { return x_->size(); }
  int dim() const { return x_->dim; }
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    out.reserve(x_->items.size());
    for (const auto& it : x_->items) out.push_back(it.id);
    return out;
  }
  // [n, dim] float32 over the index's own memory, read-only; the array keeps the index alive.
  py::array_t<float> vectors() const {
    auto keep = new std::shared_ptr<index::Index>(x_);
    py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<index::Index>*>(p); });
    py::array_t<float> a(
        {x_->size(), static_cast<int64_t>(x_->dim)},
        {static_cast<int64_t>(x_->dim) * static_cast<int64_t>(sizeof(float)), static_cast<int64_t>(sizeof(float))},
        x_->vectors.data(), owner);
    py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return a;
  }
  std::map<std::string, std::string> meta() const { return x_->meta; }
  py::dict item(const std::string& id) const {
    const index::IndexItem& it = x_->items[static_cast<size_t>(index::require_item(*x_, id))];
    py::dict d;
    d["id"] = it.id;
    d["path"] = it.path;
    d["title"] = text_or_none(it.title);
    d["artist"] = text_or_none(it.artist);
    d["in_degree"] = it.in_degree >= 0 ? py::object(py::int_(it.in_degree)) : py::none();
    d["extra"] = py::module_::import("json").attr("loads")(it.extra);
    return d;
  }
  bool approximate() const { return ann_ != nullptr; }

  py::list query(const py::object& q, int k, const std::optional<std::map<std::string, std::string>>& where,
                 const std::optional<std::string>& exclude_same) {
    return query_batch_impl({q}, k, where, exclude_same)[0];
  }

  py::list query_batch(const py::object& qs, int k, const std::optional<std::map<std::string, std::string>>& where,
                       const std::optional<std::string>& exclude_same) {
    std::vector<py::object> list;
    if (py::isinstance<py::array>(qs)) {
      const auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(qs);
      if (!a || a.ndim() != 2) throw Error("query_batch: an array of queries must be 2-D [Q, dim]");
      for (py::ssize_t i = 0; i < a.shape(0); ++i) list.push_back(qs.attr("__getitem__")(i));
    } else {
      for (const py::handle h : qs) list.push_back(py::reinterpret_borrow<py::object>(h));
    }
    return query_batch_impl(list, k, where, exclude_same);
  }

 private:
  py::list query_batch_impl(const std::vector<py::object>& qs, int k,
                            const std::optional<std::map<std::string, std::string>>& where,
                            const std::optional<std::string>& exclude_same) {
    const size_t D = static_cast<size_t>(x_->dim);
    std::vector<float> queries;
    std::vector<int64_t> rows;
    for (const py::object& q : qs) {
      if (py::isinstance<py::str>(q)) {
        const int64_t row = index::require_item(*x_, q.cast<std::string>());
        rows.push_back(row);
        queries.insert(queries.end(), x_->vector(row), x_->vector(row) + D);
        continue;
      }
      const auto v = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(q);
      if (!v || v.ndim() != 1 || static_cast<size_t>(v.shape(0)) != D)
        throw Error("a query is an item id (str) or a vector of " + std::to_string(D) + " numbers");
      double sq = 0;
      for (py::ssize_t j = 0; j < v.shape(0); ++j) sq += v.at(j) * v.at(j);
      if (!(sq > 0) || !std::isfinite(sq)) throw Error("a query vector must be finite and not zero");
      for (py::ssize_t j = 0; j < v.shape(0); ++j) queries.push_back(static_cast<float>(v.at(j) / std::sqrt(sq)));
      rows.push_back(-1);
    }
    std::vector<std::vector<index::QueryHit>> hits;
    {
      py::gil_scoped_release free;  // the search runs on the engine's threads
      index::FilteredSearch search(*be_, *x_, make_filter(where, exclude_same), ann_.get());
      hits = search.search(queries.data(), rows, k);
    }
    py::list out;
    for (const auto& h : hits) out.append(hits_list(*x_, h));
    return out;
  }

  std::shared_ptr<index::Index> x_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<index::AnnSearcher> ann_;
};

// The item embedding of an audio file with a checkpoint, as export embeds catalog items
// (crops evenly spaced clips, their mean, L2-normalised): [dim] float32.
py::array_t<float> embed(const std::string& audio_path, const std::string& checkpoint, int crops, int threads) {
  if (crops < 1 || crops > index::kMaxCrops)
    throw Error("crops must be in [1, " + std::to_string(index::kMaxCrops) + "] (got " + std::to_string(crops) + ")");
  std::vector<float> v;
  {
    py::gil_scoped_release free;
    const Config cfg = verify_checkpoint(checkpoint, false);
    const audio::DecodedAudio decoded = audio::decode_audio(audio_path, audio::decode_request(cfg.audio));
    const std::unique_ptr<Backend> be = make_cpu_backend(threads);
    Model model(cfg, *be, std::min(crops, 64));
    load_checkpoint(checkpoint, model, nullptr);
    model.set_training(false);
    v = embed::embed_track(model, decoded.samples, crops).emb;
  }
  py::array_t<float> out(static_cast<py::ssize_t>(v.size()));
  std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(float));
  return out;
}

// A checkpoint's tensors as numpy arrays by name; the optimizer's (optim.*) and the training
// state only when asked, so that a PyTorch module's load_state_dict(strict=True) takes it.
py::dict load_checkpoint_arrays(const std::string& path, bool optimizer) {
  const StFile f = read_safetensors(path);
  py::dict out;
  for (const auto& [name, t] : f.tensors) {
    if (!optimizer && (name.rfind("optim.", 0) == 0 || name.rfind("train.", 0) == 0)) continue;
    py::array a;
    std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
    switch (t.dtype) {
      case DType::F32: a = py::array_t<float>(shape); break;
      case DType::F64: a = py::array_t<double>(shape); break;
      case DType::I32: a = py::array_t<int32_t>(shape); break;
      case DType::I64: a = py::array_t<int64_t>(shape); break;
    }
    if (static_cast<size_t>(a.nbytes()) != t.bytes.size())
      throw Error(std::string(path)
                      .append(": tensor ")
                      .append(name)
                      .append(" holds ")
                      .append(std::to_string(t.bytes.size()))
                      .append(" bytes for its shape"));
    std::memcpy(a.mutable_data(), t.bytes.data(), t.bytes.size());
    out[py::str(name)] = a;
  }
  return out;
}

// Every metric of every run in a runs.sqlite, as dicts (run, run_name, step, name, value, time).
py::list runs(const std::string& path) {
  if (!std::filesystem::exists(path))
    throw Error(path + ": no such file (a training run writes runs.sqlite in its run directory)");
  const RunDb db(path, RunDb::Access::ReadOnly);
  py::list out;
  for (const RunRecord& r : db.runs())
    for (const MetricRow& m : db.metrics(r.id)) {
      py::dict d;
      d["run"] = m.run;
      d["run_name"] = r.info.name;
      d["step"] = m.step;
      d["name"] = m.name;
      d["value"] = m.value;
      d["time"] = m.time;
      out.append(d);
    }
  return out;
}

}  // namespace
}  // namespace mg::python

PYBIND11_MODULE(melgraph, m) {
  using namespace mg::python;
  m.doc() = "melgraph: the exported embedding index, audio embedding, checkpoints and run metrics";
  static py::exception<Error> error(m, "Error", PyExc_ValueError);
  // NOLINTNEXTLINE(performance-unnecessary-value-param): pybind11 takes void (*)(std::exception_ptr)
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      error(e.what());
    } catch (const mg::index::IndexInputError& e) {
      error(e.what());
    } catch (const mg::audio::AudioError& e) {
      error(e.what());
    } catch (const mg::CheckpointError& e) {
      error(e.what());
    } catch (const mg::SafetensorsError& e) {
      error(e.what());
    } catch (const mg::RunDbError& e) {
      error(e.what());
    }
  });
  py::class_<PyIndex>(m, "Index", "An index file written by `melgraph export`, read once")
      .def(py::init<const std::string&, bool, int>(), py::arg("path"), py::arg("exact") = false, py::arg("threads") = 0,
           "exact: ignore an approximate index beside the file (<path>.ann); threads: CPU threads (0: all cores)")
      .def("__len__", &PyIndex::size)
      .def_property_readonly("dim", &PyIndex::dim)
      .def_property_readonly("ids", &PyIndex::ids, "Item ids in row order")
      .def_property_readonly("vectors", &PyIndex::vectors, "[n, dim] float32 unit rows, read-only, not copied")
      .def_property_readonly("meta", &PyIndex::meta, "The index's meta table (checkpoint, config, ...)")
      .def_property_readonly("approximate", &PyIndex::approximate, "Whether unfiltered queries use <path>.ann")
      .def("item", &PyIndex::item, py::arg("id"), "One item's catalog fields")
      .def("query", &PyIndex::query, py::arg("query"), py::arg("k") = 10, py::arg("where") = py::none(),
           py::arg("exclude_same") = py::none(),
           "The k nearest items to an item id (itself left out) or a vector: a list of dicts (rank, id, title, artist, "
           "similarity, path). where: {column: value} every item must match; exclude_same: a column whose value the "
           "query item's neighbours must not share")
      .def("query_batch", &PyIndex::query_batch, py::arg("queries"), py::arg("k") = 10, py::arg("where") = py::none(),
           py::arg("exclude_same") = py::none(),
           "query() for a list of ids/vectors or a [Q, dim] array, searched together: a list of result lists");
  m.def("embed", &embed, py::arg("audio_path"), py::arg("checkpoint"), py::arg("crops") = mg::embed::kDefaultCrops,
        py::arg("threads") = 0, "An audio file's item embedding with a checkpoint: [dim] float32, unit norm");
  m.def(
      "load_checkpoint", &load_checkpoint_arrays, py::arg("path"), py::arg("optimizer") = false,
      "A checkpoint's tensors as numpy arrays by name (the optimizer's and training state's only with optimizer=True)");
  m.def("runs", &runs, py::arg("path"), "The metrics of every run in a runs.sqlite, as a list of dicts");
}
