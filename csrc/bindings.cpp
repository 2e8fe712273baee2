// The one place that knows about Python: array checks, GIL release, allocation
// between the two passes of each C++ core. Argument validation with user-facing
// messages (column names, dtypes) lives in the Python wrappers in lamfast/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "attention.hpp"
#include "sampler.hpp"
#include "tokenizer.hpp"
#include "xp_text.hpp"
#include "xmatch.hpp"

namespace py = pybind11;
using namespace lamfast;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;  // no forcecast: wrappers convert

template <class T>
const T* data_or_null(const std::optional<Array<T>>& a) {
  return a ? a->data() : nullptr;
}

py::object bad_cell(const BadCell& b) {
  if (b.row < 0) return py::none();
  return py::make_tuple(b.row, b.col, b.in_errors);
}

Standardize make_standardize(const std::optional<Array<float>>& center,
                             const std::optional<Array<float>>& inv_scale) {
  if (center.has_value() != inv_scale.has_value())
    throw std::invalid_argument("center and inv_scale go together");
  return {data_or_null(center), data_or_null(inv_scale)};
}

// Exclusive prefix sum of per-star counts into cu[0..n], checking int32 range: cu_seqlens
// are int32 by design (flash-attention's layout), so a batch over 2^31-1 tokens is
// refused, never wrapped. Counts are >= 0 (they come from the cores).
Array<int32_t> prefix_sum(const Array<int32_t>& counts) {
  if (counts.ndim() != 1) throw std::invalid_argument("counts must be 1-D");
  const int64_t n = counts.shape(0);
  Array<int32_t> cu(n + 1);
  int32_t* out = cu.mutable_data();
  const int32_t* c = counts.data();
  int64_t total = 0;
  out[0] = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += c[i];
    if (total > INT32_MAX)
      throw std::overflow_error("more than 2^31-1 tokens (" + std::to_string(total) +
                                " by row " + std::to_string(i) +
                                ") in one batch: int32 cu_seqlens cannot index them; "
                                "split the catalogue into smaller chunks");
    out[i + 1] = static_cast<int32_t>(total);
  }
  return cu;
}

// What the column cores index without checking: values [N, V] (V < 2^31), errors like
// values, [V] per-column tables. The Python wrappers give the user-facing messages; these
// turn a bad internal call into an exception instead of an out-of-bounds read.
int32_t check_table(const Array<float>& values, const std::optional<Array<float>>& errors,
                    const Array<int32_t>& token_ids, const std::optional<Array<float>>& center,
                    const std::optional<Array<float>>& inv_scale) {
  if (values.ndim() != 2) throw std::invalid_argument("values must be [N, V]");
  if (values.shape(1) > INT32_MAX - 64) throw std::invalid_argument("too many columns");
  const int64_t v = values.shape(1);
  if (errors && (errors->ndim() != 2 || errors->shape(0) != values.shape(0) ||
                 errors->shape(1) != v))
    throw std::invalid_argument("errors must have the shape of values");
  if (token_ids.ndim() != 1 || token_ids.shape(0) != v)
    throw std::invalid_argument("token_ids must be [V]");
  for (const auto* a : {&center, &inv_scale})
    if (*a && (*a)->size() != v) throw std::invalid_argument("center/inv_scale must be [V]");
  return static_cast<int32_t>(v);
}

py::object tokenize(const Array<float>& values, const std::optional<Array<float>>& errors,
                    const Array<int32_t>& token_ids, const std::optional<Array<float>>& center,
                    const std::optional<Array<float>>& inv_scale, int32_t max_tokens,
                    int threads) {
  const int32_t v = check_table(values, errors, token_ids, center, inv_scale);
  const int64_t n = values.shape(0);
  if (max_tokens < 0) throw std::invalid_argument("max_tokens must be >= 0");
  const float* err = data_or_null(errors);
  const Standardize standardize = make_standardize(center, inv_scale);
  Array<int32_t> seqlens(n);
  BadCell bad;
  {
    py::gil_scoped_release release;
    bad = tokenize_count(values.data(), err, n, v, max_tokens, seqlens.mutable_data(), threads);
  }
  if (bad.row >= 0) return py::make_tuple(bad_cell(bad));
  Array<int32_t> cu = prefix_sum(seqlens);
  const int64_t total = cu.data()[n];
  Array<int32_t> ids(total);
  Array<float> vals(total);
  std::optional<Array<float>> errs;
  if (err) errs.emplace(total);
  {
    py::gil_scoped_release release;
    tokenize_fill(values.data(), err, n, v, token_ids.data(), standardize, cu.data(),
                  ids.mutable_data(), vals.mutable_data(),
                  errs ? errs->mutable_data() : nullptr, threads);
  }
  py::object e = errs ? py::object(*errs) : py::none();
  return py::make_tuple(py::none(), ids, vals, e, cu);
}

py::object sample(const Array<float>& values, const std::optional<Array<float>>& errors,
                  const Array<int32_t>& token_ids, const Array<int64_t>& star_ids,
                  const Array<int32_t>& output_weights, const std::optional<Array<float>>& center,
                  const std::optional<Array<float>>& inv_scale, uint64_t seed, uint64_t epoch,
                  int32_t context, int32_t max_blank, int32_t n_outputs, bool exclude_inputs,
                  int threads) {
  const int32_t v = check_table(values, errors, token_ids, center, inv_scale);
  const int64_t n = values.shape(0);
  if (star_ids.ndim() != 1 || star_ids.shape(0) != n)
    throw std::invalid_argument("star_ids must be [N]");
  if (output_weights.ndim() != 1 || output_weights.shape(0) != v)
    throw std::invalid_argument("output_weights must be [V]");
  for (int32_t c = 0; c < v; ++c)
    if (output_weights.data()[c] < 0) throw std::invalid_argument("output weights must be >= 0");
  if (context < 0 || max_blank < 0 || n_outputs < 0)
    throw std::invalid_argument("context, max_blank and n_outputs must be >= 0");
  // At most V targets can be drawn (without replacement): a larger n_outputs draws the
  // same, and must not size the [N, n_outputs] scratch.
  n_outputs = std::min(n_outputs, v);
  const float* err = data_or_null(errors);
  const Standardize standardize = make_standardize(center, inv_scale);
  SamplerConfig cfg{seed, epoch, context, max_blank, n_outputs, exclude_inputs};
  Array<int32_t> n_in(n), n_out(n);
  std::vector<uint64_t> input_masks(size_t(n) * mask_words(v));
  std::vector<int32_t> target_cols(size_t(n) * size_t(std::max(n_outputs, 0)));
  BadCell bad;
  {
    py::gil_scoped_release release;
    bad = sample_draw(values.data(), err, n, v, star_ids.data(), output_weights.data(), cfg,
                      input_masks.data(), target_cols.data(), n_in.mutable_data(),
                      n_out.mutable_data(), threads);
  }
  if (bad.row >= 0) return py::make_tuple(bad_cell(bad));
  Array<int32_t> cu_in = prefix_sum(n_in), cu_out = prefix_sum(n_out);
  const int64_t t_in = cu_in.data()[n], t_out = cu_out.data()[n];
  Array<int32_t> in_id(t_in), target_id(t_out);
  Array<float> in_value(t_in), target_value(t_out), target_error(t_out);
  std::optional<Array<float>> in_error;
  if (err) in_error.emplace(t_in);
  {
    py::gil_scoped_release release;
    sample_fill(values.data(), err, n, v, n_outputs, input_masks.data(), target_cols.data(),
                token_ids.data(), standardize, cu_in.data(), cu_out.data(),
                in_id.mutable_data(), in_value.mutable_data(),
                in_error ? in_error->mutable_data() : nullptr, target_id.mutable_data(),
                target_value.mutable_data(), target_error.mutable_data(), threads);
  }
  py::object e = in_error ? py::object(*in_error) : py::none();
  return py::make_tuple(py::none(), in_id, in_value, e, cu_in, target_id, target_value,
                        target_error, cu_out);
}

}  // namespace

void register_tokenizer(py::module_& m) {
  m.def("tokenize", &tokenize, py::arg("values"), py::arg("errors"), py::arg("token_ids"),
        py::arg("center"), py::arg("inv_scale"), py::arg("max_tokens"), py::arg("threads"),
        "Packed ragged tokens. Returns (bad, id, value, error, cu_seqlens) or (bad,) where "
        "bad = (row, col, in_errors) names the first infinite cell.");
  m.def("_cu_seqlens", &prefix_sum, py::arg("counts"),
        "int32 [N+1] exclusive prefix sum of int32 counts; OverflowError past 2^31-1 "
        "(the offsets of tokenize and sample; exposed for tests).");
  m.def("sample", &sample, py::arg("values"), py::arg("errors"), py::arg("token_ids"),
        py::arg("star_ids"), py::arg("output_weights"), py::arg("center"),
        py::arg("inv_scale"), py::arg("seed"), py::arg("epoch"), py::arg("context"),
        py::arg("max_blank"), py::arg("n_outputs"), py::arg("exclude_inputs"),
        py::arg("threads"),
        "One epoch of the training sampler. Returns (bad, in_id, in_value, in_error, "
        "cu_inputs, target_id, target_value, target_error, cu_targets) or (bad,).");
}

// ---- XP archive text parser (lamfast/io/xp_archive.py) --------------------------------
namespace {

const char* const kBandNames[2] = {"bp", "rp"};
constexpr int64_t kRows = -1;  // output_column: a [capacity] array

std::vector<XpField> xp_fields(const Array<int32_t>& kinds, const Array<int32_t>& bands,
                               const Array<int32_t>& indices, bool correlations,
                               int32_t n_extra) {
  const int32_t n_fields = static_cast<int32_t>(kinds.shape(0));
  if (bands.shape(0) != n_fields || indices.shape(0) != n_fields)
    throw std::invalid_argument("kinds, bands and indices must have one entry per field");
  std::vector<XpField> fields(n_fields);
  for (int32_t f = 0; f < n_fields; ++f) {
    const int32_t k = kinds.data()[f], b = bands.data()[f], x = indices.data()[f];
    if (k < 0 || k > static_cast<int32_t>(XpFieldKind::kExtra) || b < 0 || b > 1 ||
        (k == static_cast<int32_t>(XpFieldKind::kExtra) && (x < 0 || x >= n_extra)))
      throw std::invalid_argument("bad field description at field " + std::to_string(f));
    if (k == static_cast<int32_t>(XpFieldKind::kCorrelations) && !correlations)
      throw std::invalid_argument("correlation field given but correlations not wanted");
    fields[f] = {static_cast<XpFieldKind>(k), b, x};
  }
  return fields;
}

py::buffer_info text_buffer(const py::buffer& data) {
  py::buffer_info info = data.request();
  if (info.ndim != 1 || info.itemsize != 1)
    throw std::invalid_argument("data must be a 1-D bytes-like buffer");
  return info;
}

py::object xp_error(const XpTextError& err, const LineIndex& lines) {
  if (err.row < 0) return py::none();
  return py::make_tuple(err.row, lines.line[err.row], err.field,
                        static_cast<int32_t>(err.code), err.found, py::bytes(err.text));
}

// arrays[name] as a writable C-contiguous [capacity, width] (kRows: [capacity]) array
// of T: never a converted copy, which would take the parsed values away.
template <class T>
T* output_column(const py::dict& arrays, const std::string& name, int64_t width,
                 int64_t& capacity) {
  if (!arrays.contains(name)) throw std::invalid_argument("outputs lack " + name);
  py::object obj = arrays[name.c_str()];
  if (!Array<T>::check_(obj)) throw std::invalid_argument(name + ": wrong dtype or not C-contiguous");
  auto a = py::reinterpret_borrow<Array<T>>(obj);
  const bool shape_ok = width == kRows ? a.ndim() == 1 : a.ndim() == 2 && a.shape(1) == width;
  if (!shape_ok) throw std::invalid_argument(name + ": wrong shape");
  if (capacity < 0) capacity = a.shape(0);
  if (a.shape(0) != capacity) throw std::invalid_argument(name + ": rows differ from source_id's");
  return a.mutable_data();
}

// Pointers to every output of `arrays` (the dict _read_text allocates) and its rows.
XpTextOutputs xp_outputs(const py::dict& arrays, int64_t& capacity) {
  XpTextOutputs out;
  capacity = -1;
  out.source_id = output_column<int64_t>(arrays, "source_id", kRows, capacity);
  const bool correlations = arrays.contains("bp_coefficient_correlations");
  for (int b = 0; b < 2; ++b) {
    const std::string p = kBandNames[b];
    out.coefficients[b] = output_column<double>(arrays, p + "_coefficients", kXpBases, capacity);
    out.errors[b] = output_column<float>(arrays, p + "_coefficient_errors", kXpBases, capacity);
    out.n_relevant[b] = output_column<int32_t>(arrays, p + "_n_relevant_bases", kRows, capacity);
    out.std_dev[b] = output_column<float>(arrays, p + "_standard_deviation", kRows, capacity);
    if (correlations)
      out.correlations[b] = output_column<float>(arrays, p + "_coefficient_correlations",
                                                 kXpCorrelations, capacity);
  }
  py::object extra = arrays["extra"];
  if (!Array<double>::check_(extra) || py::reinterpret_borrow<py::array>(extra).ndim() != 2)
    throw std::invalid_argument("extra: wrong dtype or shape");
  out.n_extra = static_cast<int32_t>(py::reinterpret_borrow<py::array>(extra).shape(1));
  out.extra = output_column<double>(arrays, "extra", out.n_extra, capacity);
  return out;
}

// The same outputs from row `row` on.
XpTextOutputs from_row(XpTextOutputs out, int64_t row) {
  out.source_id += row;
  for (int b = 0; b < 2; ++b) {
    out.coefficients[b] += row * kXpBases;
    out.errors[b] += row * kXpBases;
    if (out.correlations[b]) out.correlations[b] += row * kXpCorrelations;
    out.n_relevant[b] += row;
    out.std_dev[b] += row;
  }
  out.extra += row * out.n_extra;
  return out;
}

// Parses the whole data lines in `data` (bytes-like). Returns (error, arrays): error is
// None or (row, line, field, code, found, text) with 0-based row/line/field; arrays is a
// dict of numpy arrays named like the archive columns (+ "line": 0-based line numbers of
// the rows, "n_lines": lines in the buffer).
py::tuple parse_xp_text(const py::buffer& data, const Array<int32_t>& kinds,
                        const Array<int32_t>& bands, const Array<int32_t>& indices,
                        char delimiter, bool correlations, int32_t n_extra, int threads) {
  const py::buffer_info info = text_buffer(data);
  const std::vector<XpField> fields = xp_fields(kinds, bands, indices, correlations, n_extra);
  const char* bytes = static_cast<const char*>(info.ptr);
  LineIndex lines;
  {
    py::gil_scoped_release release;
    lines = index_lines(bytes, info.size);
  }
  const int64_t n = lines.size();
  py::dict arrays;
  Array<int64_t> line(n);
  std::copy(lines.line.begin(), lines.line.end(), line.mutable_data());
  arrays["source_id"] = Array<int64_t>(n);
  for (int b = 0; b < 2; ++b) {
    const std::string p = kBandNames[b];
    arrays[(p + "_coefficients").c_str()] = Array<double>({n, int64_t{kXpBases}});
    arrays[(p + "_coefficient_errors").c_str()] = Array<float>({n, int64_t{kXpBases}});
    arrays[(p + "_n_relevant_bases").c_str()] = Array<int32_t>(n);
    arrays[(p + "_standard_deviation").c_str()] = Array<float>(n);
    if (correlations)
      arrays[(p + "_coefficient_correlations").c_str()] = Array<float>({n, int64_t{kXpCorrelations}});
  }
  arrays["extra"] = Array<double>({n, int64_t{n_extra}});
  int64_t capacity;
  const XpTextOutputs out = xp_outputs(arrays, capacity);
  arrays["line"] = line;
  arrays["n_lines"] = lines.total_lines;
  XpTextError err;
  {
    py::gil_scoped_release release;
    err = parse_xp_rows(bytes, lines, fields.data(), static_cast<int32_t>(fields.size()),
                        delimiter, out, threads);
  }
  if (err.row >= 0) return py::make_tuple(xp_error(err, lines), py::none());
  return py::make_tuple(py::none(), arrays);
}

// As parse_xp_text, into rows row0.. of the caller's arrays (a dict as parse_xp_text's,
// without "line"/"n_lines"; correlations where it has them). Returns (error, rows,
// n_lines); where the rows do not fit, nothing is parsed and n_lines is -1.
py::tuple parse_xp_text_into(const py::buffer& data, const Array<int32_t>& kinds,
                             const Array<int32_t>& bands, const Array<int32_t>& indices,
                             char delimiter, const py::dict& arrays, int64_t row0, int threads) {
  const py::buffer_info info = text_buffer(data);
  int64_t capacity;
  const XpTextOutputs all = xp_outputs(arrays, capacity);
  if (row0 < 0 || row0 > capacity) throw std::invalid_argument("row0 outside the arrays");
  const XpTextOutputs out = from_row(all, row0);
  const std::vector<XpField> fields =
      xp_fields(kinds, bands, indices, out.correlations[0] != nullptr, out.n_extra);
  const char* bytes = static_cast<const char*>(info.ptr);
  LineIndex lines;
  XpTextError err;
  bool fits;
  {
    py::gil_scoped_release release;
    lines = index_lines(bytes, info.size);
    fits = row0 + lines.size() <= capacity;
    if (fits)
      err = parse_xp_rows(bytes, lines, fields.data(), static_cast<int32_t>(fields.size()),
                          delimiter, out, threads);
  }
  return py::make_tuple(xp_error(err, lines), lines.size(), fits ? lines.total_lines : int64_t{-1});
}

}  // namespace

void register_xp_text(py::module_& m) {
  m.def("parse_xp_text", &parse_xp_text, py::arg("data"), py::arg("kinds"), py::arg("bands"),
        py::arg("indices"), py::arg("delimiter"), py::arg("correlations"), py::arg("n_extra"),
        py::arg("threads"),
        "Gaia XP_CONTINUOUS text rows -> arrays. Returns (error, arrays).");
  m.def("parse_xp_text_into", &parse_xp_text_into, py::arg("data"), py::arg("kinds"),
        py::arg("bands"), py::arg("indices"), py::arg("delimiter"), py::arg("arrays"),
        py::arg("row0"), py::arg("threads"),
        "Gaia XP_CONTINUOUS text rows -> rows row0.. of the given arrays. Returns "
        "(error, rows, n_lines); n_lines -1: the rows do not fit, nothing parsed.");
}
// ---- end XP archive text parser -------------------------------------------------------
// ===== xmatch (issue 7): sky cross-match ===========================================
namespace {

namespace xm = lamfast::xmatch;

// Views of the Python arrays (float64, C-contiguous, lengths checked by the wrapper).
xm::Points xmatch_points(const Array<double>& ra, const Array<double>& dec,
                         const std::optional<Array<double>>& pmra,
                         const std::optional<Array<double>>& pmdec,
                         const std::optional<Array<double>>& dt) {
  xm::Points p{ra.data(), dec.data(), ra.shape(0), {}};
  if (dec.shape(0) != p.n) throw std::invalid_argument("ra and dec differ in length");
  if (pmra.has_value() != pmdec.has_value() || pmra.has_value() != dt.has_value())
    throw std::invalid_argument("pmra, pmdec and dt go together");
  if (pmra) {
    if (pmra->shape(0) != p.n || pmdec->shape(0) != p.n)
      throw std::invalid_argument("pmra/pmdec and ra differ in length");
    if (dt->shape(0) != 1 && dt->shape(0) != p.n)
      throw std::invalid_argument("dt must have length 1 or len(ra)");
    p.motion = {pmra->data(), pmdec->data(), dt->data(), dt->shape(0) == 1 ? 0 : 1};
  }
  return p;
}

// None, or (row, field name) of the first bad input row.
py::object xmatch_bad(const xm::Points& p, int threads) {
  xm::BadRow b;
  {
    py::gil_scoped_release release;
    b = xm::find_bad_row(p, threads);
  }
  if (b.row < 0) return py::none();
  static const char* names[] = {"", "ra", "dec", "pmra", "pmdec", "epoch"};
  return py::make_tuple(b.row, names[b.what]);
}

// A numpy array that takes ownership of a std::vector (no copy).
template <class T>
py::array_t<T> xmatch_to_numpy(std::vector<T>&& v) {
  auto* owned = new std::vector<T>(std::move(v));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(static_cast<py::ssize_t>(owned->size()), owned->data(), free_when_done);
}

py::tuple xmatch_build(const Array<double>& ra, const Array<double>& dec,
                       double zone_height_deg, int threads) {
  const xm::Points p = xmatch_points(ra, dec, {}, {}, {});
  py::object bad = xmatch_bad(p, threads);
  if (!bad.is_none()) return py::make_tuple(bad, py::none());
  std::unique_ptr<xm::ZoneIndex> index;
  {
    py::gil_scoped_release release;
    index = std::make_unique<xm::ZoneIndex>(p.ra, p.dec, p.n, zone_height_deg, threads);
  }
  return py::make_tuple(py::none(), py::cast(std::move(index)));
}

py::tuple xmatch_nearest(const xm::ZoneIndex& index, const Array<double>& ra,
                         const Array<double>& dec, const std::optional<Array<double>>& pmra,
                         const std::optional<Array<double>>& pmdec,
                         const std::optional<Array<double>>& dt, double radius_rad, int k,
                         int threads) {
  if (k < 1) throw std::invalid_argument("k must be >= 1");
  const xm::Points p = xmatch_points(ra, dec, pmra, pmdec, dt);
  if (p.n > INT64_MAX / 16 / k)
    throw std::invalid_argument("n * k output slots do not fit in memory: lower k");
  py::object bad = xmatch_bad(p, threads);
  if (!bad.is_none()) return py::make_tuple(bad);
  Array<int64_t> idx2(p.n * k);
  Array<double> sep(p.n * k);
  {
    py::gil_scoped_release release;
    index.nearest(p, radius_rad, k, idx2.mutable_data(), sep.mutable_data(), threads);
  }
  return py::make_tuple(py::none(), idx2, sep);
}

py::tuple xmatch_all(const xm::ZoneIndex& index, const Array<double>& ra,
                     const Array<double>& dec, const std::optional<Array<double>>& pmra,
                     const std::optional<Array<double>>& pmdec,
                     const std::optional<Array<double>>& dt, double radius_rad,
                     int64_t idx1_offset, int threads) {
  const xm::Points p = xmatch_points(ra, dec, pmra, pmdec, dt);
  if (idx1_offset < 0 || idx1_offset > INT64_MAX - p.n)
    throw std::invalid_argument("idx1_offset must be >= 0 and leave room for the rows");
  py::object bad = xmatch_bad(p, threads);
  if (!bad.is_none()) return py::make_tuple(bad);
  xm::ZoneIndex::Pairs pairs;
  {
    py::gil_scoped_release release;
    pairs = index.all(p, radius_rad, idx1_offset, threads);
  }
  return py::make_tuple(py::none(), xmatch_to_numpy(std::move(pairs.idx1)),
                        xmatch_to_numpy(std::move(pairs.idx2)),
                        xmatch_to_numpy(std::move(pairs.sep_arcsec)));
}

py::tuple xmatch_propagate(const Array<double>& ra, const Array<double>& dec,
                           const Array<double>& pmra, const Array<double>& pmdec,
                           const Array<double>& dt, int threads) {
  const xm::Points p = xmatch_points(ra, dec, pmra, pmdec, dt);
  py::object bad = xmatch_bad(p, threads);
  if (!bad.is_none()) return py::make_tuple(bad);
  Array<double> ra_out(p.n), dec_out(p.n);
  {
    py::gil_scoped_release release;
    xm::propagate(p, ra_out.mutable_data(), dec_out.mutable_data(), threads);
  }
  return py::make_tuple(py::none(), ra_out, dec_out);
}

Array<int64_t> xmatch_one_to_one(const Array<int64_t>& idx1, const Array<int64_t>& idx2,
                                 const Array<double>& sep) {
  const int64_t n = idx1.shape(0);
  if (idx2.shape(0) != n || sep.shape(0) != n)
    throw std::invalid_argument("idx1, idx2 and sep differ in length");
  for (int64_t i = 0; i < n; ++i)
    if (idx1.data()[i] < 0 || idx2.data()[i] < 0)
      throw std::invalid_argument("idx1 and idx2 must be >= 0 (row " + std::to_string(i) + ")");
  std::vector<int64_t> kept;
  {
    py::gil_scoped_release release;
    kept = xm::one_to_one(idx1.data(), idx2.data(), sep.data(), n);
  }
  return xmatch_to_numpy(std::move(kept));
}

void register_xmatch(py::module_& m) {
  py::class_<xm::ZoneIndex>(m, "XmatchIndex")
      .def_property_readonly("size", &xm::ZoneIndex::size)
      .def_property_readonly("zone_height_deg", &xm::ZoneIndex::zone_height_deg)
      .def_property_readonly("n_cells", &xm::ZoneIndex::n_cells);
  m.def("xmatch_build", &xmatch_build, py::arg("ra"), py::arg("dec"),
        py::arg("zone_height_deg"), py::arg("threads"),
        "Zone index of a catalogue (degrees). Returns (bad, index) with bad = (row, field) "
        "or None.");
  m.def("xmatch_nearest", &xmatch_nearest, py::arg("index"), py::arg("ra"), py::arg("dec"),
        py::arg("pmra"), py::arg("pmdec"), py::arg("dt"), py::arg("radius_rad"), py::arg("k"),
        py::arg("threads"),
        "k nearest within radius per row: (bad, idx2 [n*k], sep_arcsec [n*k]) or (bad,).");
  m.def("xmatch_all", &xmatch_all, py::arg("index"), py::arg("ra"), py::arg("dec"),
        py::arg("pmra"), py::arg("pmdec"), py::arg("dt"), py::arg("radius_rad"),
        py::arg("idx1_offset"), py::arg("threads"),
        "All pairs within radius: (bad, idx1, idx2, sep_arcsec) or (bad,).");
  m.def("xmatch_propagate", &xmatch_propagate, py::arg("ra"), py::arg("dec"), py::arg("pmra"),
        py::arg("pmdec"), py::arg("dt"), py::arg("threads"),
        "Positions moved by proper motion: (bad, ra, dec) or (bad,).");
  m.def("xmatch_one_to_one", &xmatch_one_to_one, py::arg("idx1"), py::arg("idx2"),
        py::arg("sep"), "Positions of the pairs kept by greedy closest-first one-to-one.");
}

}  // namespace
// ===== end xmatch ==================================================================

// ===== attention ===================================================================
namespace {

using Rows = py::array_t<float>;  // [T, H, D], heads x dims contiguous, any row stride
// The same of bf16 values (their bits as int16); no forcecast: any other dtype is refused.
using Bf16Rows = py::array_t<int16_t, 0>;

int64_t row_stride(const py::array& x, const char* name) {
  if (x.ndim() != 3) throw std::invalid_argument(std::string(name) + " must be [tokens, heads, head_dim]");
  const auto f = static_cast<py::ssize_t>(x.itemsize());
  const int64_t row = x.shape(1) * x.shape(2);
  if (x.size() == 0) return row;  // strides of empty arrays mean nothing
  // Strides of length-1 dims are arbitrary (numpy and torch both leave them free).
  if ((x.shape(2) > 1 && x.strides(2) != f) || (x.shape(1) > 1 && x.strides(1) != f * x.shape(2)) ||
      (x.shape(0) > 1 && (x.strides(0) % f || x.strides(0) < f * row)))
    throw std::invalid_argument(std::string(name) + ": each token row must be contiguous");
  return x.shape(0) > 1 ? x.strides(0) / f : row;
}

// Checks what the C++ core relies on (shapes, cu_seqlens inside the token ranges), so a
// bad call raises instead of reading out of bounds; the Python wrapper gives the
// user-facing messages.
template <class A>
VarlenSets varlen_sets(const A& q, const A& k, const A& v, const Array<int32_t>& cu_q,
                       const Array<int32_t>& cu_k, const std::optional<Array<float>>& bias_k,
                       const std::optional<Array<float>>& bias_v, Strides& strides) {
  strides = {row_stride(q, "q"), row_stride(k, "k"), row_stride(v, "v")};
  for (int a = 1; a < 3; ++a)
    if (k.shape(a) != q.shape(a) || v.shape(a) != q.shape(a))
      throw std::invalid_argument("q, k, v differ in heads or head_dim");
  if (k.shape(0) != v.shape(0)) throw std::invalid_argument("k and v differ in tokens");
  if (!attention_supports(q.shape(2))) throw std::invalid_argument("no CPU kernel for this head_dim");
  if (cu_q.ndim() != 1 || cu_q.shape(0) < 1 || cu_k.ndim() != 1 || cu_k.shape(0) != cu_q.shape(0))
    throw std::invalid_argument("cu_seqlens_q and cu_seqlens_k must be [B+1] alike");
  if (bias_k.has_value() != bias_v.has_value())
    throw std::invalid_argument("bias_k and bias_v go together");
  const int64_t hd = q.shape(1) * q.shape(2);
  if (bias_k && (bias_k->size() != hd || bias_v->size() != hd))
    throw std::invalid_argument("bias_k/bias_v must be [heads, head_dim]");
  for (const auto* cu : {&cu_q, &cu_k}) {
    const int32_t* c = cu->data();
    const int64_t total = (cu == &cu_q ? q : k).shape(0);
    if (c[0] != 0 || c[cu->shape(0) - 1] != total)
      throw std::invalid_argument("cu_seqlens must rise from 0 to the token count");
    for (int64_t i = 1; i < cu->shape(0); ++i)
      if (c[i] < c[i - 1]) throw std::invalid_argument("cu_seqlens must not decrease");
  }
  return {cu_q.data(), cu_k.data(), cu_q.shape(0) - 1, q.shape(1), q.shape(2)};
}

void attention_forward_py(const Rows& q, const Rows& k, const Rows& v, const Array<int32_t>& cu_q,
                          const Array<int32_t>& cu_k, const std::optional<Array<float>>& bias_k,
                          const std::optional<Array<float>>& bias_v, float scale,
                          Array<float>& out, Array<float>& lse, int threads) {
  Strides strides;
  const VarlenSets sets = varlen_sets(q, k, v, cu_q, cu_k, bias_k, bias_v, strides);
  if (out.size() != q.size() || lse.size() != q.shape(0) * q.shape(1))
    throw std::invalid_argument("out must be like q and lse [tokens, heads]");
  py::gil_scoped_release release;
  attention_forward(sets, strides, q.data(), k.data(), v.data(), data_or_null(bias_k),
                    data_or_null(bias_v), scale, out.mutable_data(), lse.mutable_data(), threads);
}

void attention_forward_bf16_py(const Bf16Rows& q, const Bf16Rows& k, const Bf16Rows& v,
                               const Array<int32_t>& cu_q, const Array<int32_t>& cu_k,
                               const std::optional<Array<float>>& bias_k,
                               const std::optional<Array<float>>& bias_v, float scale,
                               Bf16Rows& out, Array<float>& lse, int threads) {
  Strides strides;
  const VarlenSets sets = varlen_sets(q, k, v, cu_q, cu_k, bias_k, bias_v, strides);
  if (out.size() != q.size() || lse.size() != q.shape(0) * q.shape(1))
    throw std::invalid_argument("out must be like q and lse [tokens, heads]");
  if (out.ndim() != 3 || row_stride(out, "out") != q.shape(1) * q.shape(2))
    throw std::invalid_argument("out must be a contiguous [tokens, heads, head_dim]");
  const auto bits = [](const Bf16Rows& x) { return reinterpret_cast<const uint16_t*>(x.data()); };
  uint16_t* result = reinterpret_cast<uint16_t*>(out.mutable_data());
  py::gil_scoped_release release;
  attention_forward_bf16(sets, strides, bits(q), bits(k), bits(v), data_or_null(bias_k),
                         data_or_null(bias_v), scale, result, lse.mutable_data(), threads);
}

void attention_backward_py(const Array<float>& dout, const Rows& q, const Rows& k, const Rows& v,
                           const Array<float>& out, const Array<float>& lse,
                           const Array<int32_t>& cu_q, const Array<int32_t>& cu_k,
                           const std::optional<Array<float>>& bias_k,
                           const std::optional<Array<float>>& bias_v, float scale,
                           Array<float>& dq, Array<float>& dk, Array<float>& dv,
                           std::optional<Array<float>>& dbias_k,
                           std::optional<Array<float>>& dbias_v, int threads) {
  Strides strides;
  const VarlenSets sets = varlen_sets(q, k, v, cu_q, cu_k, bias_k, bias_v, strides);
  if (dout.size() != q.size() || out.size() != q.size() || dq.size() != q.size() ||
      lse.size() != q.shape(0) * q.shape(1) || dk.size() != k.size() || dv.size() != k.size())
    throw std::invalid_argument("dout/out/dq must be like q, dk/dv like k, lse [tokens, heads]");
  if (bias_k && !(dbias_k && dbias_v && dbias_k->size() == bias_k->size() &&
                  dbias_v->size() == bias_k->size()))
    throw std::invalid_argument("dbias_k/dbias_v [heads, head_dim] needed with a bias");
  float* gbk = bias_k ? dbias_k->mutable_data() : nullptr;
  float* gbv = bias_k ? dbias_v->mutable_data() : nullptr;
  py::gil_scoped_release release;
  attention_backward(sets, strides, dout.data(), q.data(), k.data(), v.data(), out.data(),
                     lse.data(), data_or_null(bias_k), data_or_null(bias_v), scale,
                     dq.mutable_data(), dk.mutable_data(), dv.mutable_data(), gbk, gbv, threads);
}

void register_attention(py::module_& m) {
  m.def("attention_supports", &attention_supports, py::arg("head_dim"),
        "Whether the CPU attention kernels are compiled for this head dim.");
  m.def("attention_isas", [] {
    py::list runs;
    for (const char* isa : {"avx512", "avx2", "baseline"})
      if (attention_isa_runs(isa)) runs.append(isa);
    return runs;
  }, "The instruction sets whose CPU attention kernels this CPU runs, best first.");
  m.def("attention_isa", &attention_isa,
        "Instruction set of the CPU attention kernels: 'avx512', 'avx2' or 'baseline', the best the CPU runs (LAMFAST_CPU_ISA=<name> forces one).");
  m.def("attention_forward", &attention_forward_py, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("cu_q"), py::arg("cu_k"), py::arg("bias_k"), py::arg("bias_v"), py::arg("scale"),
        py::arg("out"), py::arg("lse"), py::arg("threads"),
        "Varlen attention forward into out [Tq, H, D] and lse [Tq, H] (float32).");
  m.def("attention_forward_bf16", &attention_forward_bf16_py, py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("cu_q"), py::arg("cu_k"), py::arg("bias_k"),
        py::arg("bias_v"), py::arg("scale"), py::arg("out"), py::arg("lse"), py::arg("threads"),
        "Varlen attention forward on bf16 q/k/v (their bits as int16) into bf16 out [Tq, H, D] "
        "(int16 bits) and float32 lse [Tq, H]; computed in float32, inference only.");
  m.def("attention_backward", &attention_backward_py, py::arg("dout"), py::arg("q"),
        py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("cu_q"),
        py::arg("cu_k"), py::arg("bias_k"), py::arg("bias_v"), py::arg("scale"), py::arg("dq"),
        py::arg("dk"), py::arg("dv"), py::arg("dbias_k"), py::arg("dbias_v"),
        py::arg("threads"), "Varlen attention backward into dq, dk, dv (and dbias_k/v).");
}

}  // namespace
// ===== end attention ===============================================================

PYBIND11_MODULE(_core, m) {
  m.doc() = "lamfast C++ core: tokenizer, training sampler, XP text parser, sky cross-match, CPU attention";

  register_tokenizer(m);
  register_xp_text(m);
  register_xmatch(m);
  register_attention(m);
}
