#include "xp_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "decimal.hpp"
#include "parallel.hpp"

namespace lamfast {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr size_t kMaxErrorText = 48;

struct Span {
  const char* b;
  const char* e;
  bool empty() const { return b == e; }
};

bool is_space(char c) { return c == ' ' || c == '\t'; }

Span trim(Span s) {
  while (s.b < s.e && is_space(*s.b)) ++s.b;
  while (s.e > s.b && is_space(s.e[-1])) --s.e;
  return s;
}

std::string snippet(Span s) {
  const size_t n = static_cast<size_t>(s.e - s.b);
  std::string t(s.b, std::min(n, kMaxErrorText));
  if (n > kMaxErrorText) t += "...";
  return t;
}

// "null" / "NULL" are how ECSV and JSON spell a masked array element.
bool is_null_word(const char* p, const char* e) {
  return e - p >= 4 && (std::memcmp(p, "null", 4) == 0 || std::memcmp(p, "NULL", 4) == 0);
}

// Parses one number at p (after optional '+'); returns the end or nullptr.
const char* parse_double(const char* p, const char* e, double& out) {
  if (p < e && *p == '+') {
    ++p;
    if (p < e && (*p == '-' || *p == '+')) return nullptr;  // "+-1": not a number
  }
  if (is_null_word(p, e)) {
    out = kNaN;
    return p + 4;
  }
  auto r = parse_decimal(p, e, out);
  if (r.ec == std::errc::result_out_of_range) {
    // Over/underflow: std::from_chars leaves `out` untouched; strtod gives +/-inf or 0.
    std::string s(p, r.ptr);
    out = std::strtod(s.c_str(), nullptr);
    return r.ptr;
  }
  return r.ec == std::errc() ? r.ptr : nullptr;
}

bool parse_scalar(Span s, double& out) {
  s = trim(s);
  const char* end = parse_double(s.b, s.e, out);
  return end == s.e;
}

bool parse_int(Span s, int64_t& out) {
  s = trim(s);
  if (s.b < s.e && *s.b == '+') {
    ++s.b;
    if (s.b < s.e && *s.b == '-') return false;  // "+-1": not a number
  }
  auto r = std::from_chars(s.b, s.e, out);
  return r.ec == std::errc() && r.ptr == s.e && s.b != s.e;
}

struct RowError {
  XpTextErrorCode code = XpTextErrorCode::kNone;
  int64_t found = 0;
  std::string text;
};

// "(v1, v2, ...)" or "[v1,v2,...]" with exactly n values -> out[0..n). An empty cell or
// empty brackets mean a missing band: NaN. Values are written as T (double or float).
template <class T>
RowError parse_array(Span s, int32_t n, T* out) {
  s = trim(s);
  if (s.empty()) {
    std::fill(out, out + n, static_cast<T>(kNaN));
    return {};
  }
  const char open = *s.b, close = s.e[-1];
  if (s.e - s.b < 2 || !((open == '(' && close == ')') || (open == '[' && close == ']')))
    return {XpTextErrorCode::kBadArray, 0, snippet(s)};
  Span in = trim({s.b + 1, s.e - 1});
  if (in.empty()) {
    std::fill(out, out + n, static_cast<T>(kNaN));
    return {};
  }
  int64_t k = 0;
  const char* p = in.b;
  while (true) {
    while (p < in.e && is_space(*p)) ++p;
    double v;
    const char* q = parse_double(p, in.e, v);
    if (q == nullptr) {
      const char* stop = static_cast<const char*>(std::memchr(p, ',', in.e - p));
      return {XpTextErrorCode::kBadNumber, k, snippet({p, stop ? stop : in.e})};
    }
    if (k < n) out[k] = static_cast<T>(v);
    ++k;
    while (q < in.e && is_space(*q)) ++q;
    if (q == in.e) break;
    if (*q != ',') {
      const char* stop = static_cast<const char*>(std::memchr(p, ',', in.e - p));
      return {XpTextErrorCode::kBadNumber, k - 1, snippet({p, stop ? stop : in.e})};
    }
    p = q + 1;
  }
  if (k != n) return {XpTextErrorCode::kArrayLength, k, {}};
  return {};
}

// Fills the outputs of one row whose field is absent from the file with empty values.
struct AbsentFill {
  bool coefficients[2] = {}, errors[2] = {}, correlations[2] = {}, n_relevant[2] = {},
       std_dev[2] = {};
  std::vector<int32_t> extra;

  AbsentFill(const XpField* fields, int32_t n_fields, const XpTextOutputs& out) {
    bool seen_c[2] = {}, seen_e[2] = {}, seen_r[2] = {}, seen_n[2] = {}, seen_s[2] = {};
    std::vector<bool> seen_x(out.n_extra, false);
    for (int32_t f = 0; f < n_fields; ++f) {
      const int b = fields[f].band;
      switch (fields[f].kind) {
        case XpFieldKind::kCoefficients: seen_c[b] = true; break;
        case XpFieldKind::kErrors: seen_e[b] = true; break;
        case XpFieldKind::kCorrelations: seen_r[b] = true; break;
        case XpFieldKind::kNRelevant: seen_n[b] = true; break;
        case XpFieldKind::kStdDev: seen_s[b] = true; break;
        case XpFieldKind::kExtra: seen_x[fields[f].index] = true; break;
        default: break;
      }
    }
    for (int b = 0; b < 2; ++b) {
      coefficients[b] = out.coefficients[b] && !seen_c[b];
      errors[b] = out.errors[b] && !seen_e[b];
      correlations[b] = out.correlations[b] && !seen_r[b];
      n_relevant[b] = out.n_relevant[b] && !seen_n[b];
      std_dev[b] = out.std_dev[b] && !seen_s[b];
    }
    for (int32_t j = 0; j < out.n_extra; ++j)
      if (!seen_x[j]) extra.push_back(j);
  }

  void apply(const XpTextOutputs& out, int64_t i) const {
    for (int b = 0; b < 2; ++b) {
      if (coefficients[b])
        std::fill_n(out.coefficients[b] + i * kXpBases, kXpBases, kNaN);
      if (errors[b]) std::fill_n(out.errors[b] + i * kXpBases, kXpBases, static_cast<float>(kNaN));
      if (correlations[b])
        std::fill_n(out.correlations[b] + i * kXpCorrelations, kXpCorrelations,
                    static_cast<float>(kNaN));
      if (n_relevant[b]) out.n_relevant[b][i] = -1;
      if (std_dev[b]) out.std_dev[b][i] = static_cast<float>(kNaN);
    }
    for (int32_t j : extra) out.extra[i * out.n_extra + j] = kNaN;
  }
};

RowError parse_field(const XpField& f, Span cell, const XpTextOutputs& out, int64_t i) {
  const int b = f.band;
  switch (f.kind) {
    case XpFieldKind::kSkip:
      return {};
    case XpFieldKind::kSourceId: {
      if (trim(cell).empty()) return {XpTextErrorCode::kEmptySourceId, 0, {}};
      int64_t v;
      if (!parse_int(cell, v)) return {XpTextErrorCode::kBadNumber, 0, snippet(trim(cell))};
      out.source_id[i] = v;
      return {};
    }
    case XpFieldKind::kCoefficients:
      return parse_array(cell, kXpBases, out.coefficients[b] + i * kXpBases);
    case XpFieldKind::kErrors:
      return parse_array(cell, kXpBases, out.errors[b] + i * kXpBases);
    case XpFieldKind::kCorrelations:
      return parse_array(cell, kXpCorrelations, out.correlations[b] + i * kXpCorrelations);
    case XpFieldKind::kNRelevant: {
      int64_t v = -1;
      // Out of int32 range would wrap in the int32 column: refuse it as not a count.
      if (!trim(cell).empty() && (!parse_int(cell, v) || v < INT32_MIN || v > INT32_MAX))
        return {XpTextErrorCode::kBadNumber, 0, snippet(trim(cell))};
      out.n_relevant[b][i] = static_cast<int32_t>(v);
      return {};
    }
    case XpFieldKind::kStdDev:
    case XpFieldKind::kExtra: {
      double v = kNaN;
      if (!trim(cell).empty() && !parse_scalar(cell, v))
        return {XpTextErrorCode::kBadNumber, 0, snippet(trim(cell))};
      if (f.kind == XpFieldKind::kStdDev)
        out.std_dev[b][i] = static_cast<float>(v);
      else
        out.extra[i * out.n_extra + f.index] = v;
      return {};
    }
  }
  return {};
}

// Splits one line into its fields and parses each; on error sets `field`.
RowError parse_line(const char* b, const char* e, const XpField* fields, int32_t n_fields,
                    char delimiter, const XpTextOutputs& out, int64_t i, int32_t& field) {
  const char* p = b;
  for (int32_t f = 0; f < n_fields; ++f) {
    field = f;
    Span cell;
    const char* next;
    const char* q = p;
    while (q < e && is_space(*q) && *q != delimiter) ++q;
    if (q < e && *q == '"') {
      const char* close = static_cast<const char*>(std::memchr(q + 1, '"', e - q - 1));
      if (close == nullptr) return {XpTextErrorCode::kUnterminatedQuote, 0, snippet({q, e})};
      cell = {q + 1, close};
      next = close + 1;
      while (next < e && is_space(*next) && *next != delimiter) ++next;
    } else {
      const char* d = static_cast<const char*>(std::memchr(p, delimiter, e - p));
      next = d ? d : e;
      cell = {p, next};
    }
    const bool last = f == n_fields - 1;
    if (!last && (next >= e || *next != delimiter)) {
      if (next < e) return {XpTextErrorCode::kBadArray, 0, snippet({q, e})};
      return {XpTextErrorCode::kFieldCount, f + 1, {}};
    }
    if (last && next != e) {
      if (*next != delimiter) return {XpTextErrorCode::kBadArray, 0, snippet({q, e})};
      // Count the surplus fields for the message (quotes ignored: an estimate).
      int64_t extra = 0;
      for (const char* s = next; s < e; ++s) extra += *s == delimiter;
      field = -1;
      return {XpTextErrorCode::kFieldCount, n_fields + extra, {}};
    }
    RowError err = parse_field(fields[f], cell, out, i);
    if (err.code != XpTextErrorCode::kNone) return err;
    p = next + 1;
  }
  return {};
}

}  // namespace

LineIndex index_lines(const char* data, int64_t size) {
  LineIndex idx;
  const char* p = data;
  const char* const end = data + size;
  int64_t line = 0;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const char* e = nl ? nl : end;
    const char* t = e;
    if (t > p && t[-1] == '\r') --t;
    const char* s = p;
    while (s < t && is_space(*s)) ++s;
    if (s < t) {
      idx.begin.push_back(p - data);
      idx.end.push_back(t - data);
      idx.line.push_back(line);
    }
    ++line;
    p = nl ? nl + 1 : end;
  }
  idx.total_lines = line;
  return idx;
}

XpTextError parse_xp_rows(const char* data, const LineIndex& lines, const XpField* fields,
                          int32_t n_fields, char delimiter, const XpTextOutputs& out,
                          int threads) {
  const AbsentFill absent(fields, n_fields, out);
  const int64_t n = lines.size();
  // One slot per possible worker; each stops at its own first bad row, and blocks are in
  // row order, so the smallest failing row over all slots is the file's first bad row.
  std::vector<XpTextError> errors(std::max(1, threads));
  parallel_for(n, threads, 8, [&](int64_t begin, int64_t end, int t) {
    for (int64_t i = begin; i < end; ++i) {
      absent.apply(out, i);
      int32_t field = -1;
      RowError err = parse_line(data + lines.begin[i], data + lines.end[i], fields, n_fields,
                                delimiter, out, i, field);
      if (err.code != XpTextErrorCode::kNone) {
        errors[t] = {i, field, err.code, err.found, std::move(err.text)};
        return;
      }
    }
  });
  XpTextError first;
  for (auto& e : errors)
    if (e.row >= 0 && (first.row < 0 || e.row < first.row)) first = std::move(e);
  return first;
}

}  // namespace lamfast
