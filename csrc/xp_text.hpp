// Gaia DR3 XP_CONTINUOUS rows as the archive writes them in text (CSV with "(v1, v2, ...)"
// arrays, ECSV with "[v1,v2,...]" arrays) -> typed per-star arrays. Pure C++17, no Python.
//
// The caller (lamfast/io/xp_archive.py) reads the header, maps every delimited field of
// a row to what it holds (XpField), and hands over a buffer of whole data lines. Lines are
// independent, so rows are parsed in parallel straight into their output slots; results do
// not depend on the thread count. Numbers are parsed as double (correctly rounded:
// decimal.hpp, std::from_chars's results on a faster path) and float32 outputs are cast
// from it, as numpy and astropy do, so every reader agrees bit for bit.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lamfast {

constexpr int32_t kXpBases = 55;                                   // coefficients per band
constexpr int32_t kXpCorrelations = kXpBases * (kXpBases - 1) / 2;  // 1485, lower triangle

// What one delimited field of a row holds. Values match lamfast/io/xp_archive.py.
enum class XpFieldKind : int32_t {
  kSkip = 0,          // any other column: only its extent is found
  kSourceId = 1,      // int64; an empty cell is an error
  kCoefficients = 2,  // [55] -> float64; empty cell (missing band) -> NaN
  kErrors = 3,        // [55] -> float32
  kCorrelations = 4,  // [1485] -> float32
  kNRelevant = 5,     // int -> int32; empty -> -1
  kStdDev = 6,        // float -> float32; empty -> NaN
  kExtra = 7,         // float -> float64 column `index` of the extra table; empty -> NaN
};

struct XpField {
  XpFieldKind kind = XpFieldKind::kSkip;
  int32_t band = 0;   // 0 = BP, 1 = RP (array and per-band scalar kinds)
  int32_t index = 0;  // column of the extra table (kExtra)
};

// Row-major outputs for N rows; a null pointer means "not wanted" (its field must be
// kSkip). Outputs whose field is absent from the file are filled with their empty value.
struct XpTextOutputs {
  int64_t* source_id = nullptr;              // [N]
  double* coefficients[2] = {nullptr, nullptr};  // [N, 55] per band
  float* errors[2] = {nullptr, nullptr};         // [N, 55]
  float* correlations[2] = {nullptr, nullptr};   // [N, 1485]
  int32_t* n_relevant[2] = {nullptr, nullptr};   // [N]
  float* std_dev[2] = {nullptr, nullptr};        // [N]
  double* extra = nullptr;                       // [N, n_extra]
  int32_t n_extra = 0;
};

enum class XpTextErrorCode : int32_t {
  kNone = 0,
  kFieldCount = 1,         // `found` fields where the header has more or fewer
  kBadNumber = 2,          // `text` is not a number
  kArrayLength = 3,        // `found` values where 55 (or 1485) are expected
  kBadArray = 4,           // not "(...)" / "[...]"
  kUnterminatedQuote = 5,  // a quoted field runs past the end of its line
  kEmptySourceId = 6,
};

// The first bad row (smallest row index); row < 0 means none.
struct XpTextError {
  int64_t row = -1;    // data row within the buffer (0-based)
  int32_t field = -1;  // 0-based field of the row
  XpTextErrorCode code = XpTextErrorCode::kNone;
  int64_t found = 0;
  std::string text;  // offending cell or number, truncated
};

// Byte extents of the non-blank lines of a buffer and their 0-based line numbers
// (blank lines are skipped but counted). A trailing '\r' is not part of a line.
struct LineIndex {
  std::vector<int64_t> begin, end, line;
  int64_t total_lines = 0;  // lines in the buffer, blank ones included
  int64_t size() const { return static_cast<int64_t>(begin.size()); }
};

LineIndex index_lines(const char* data, int64_t size);

// Parses every indexed line (a row of n_fields fields split by `delimiter`; a field may
// be wrapped in double quotes) into row i of the outputs.
XpTextError parse_xp_rows(const char* data, const LineIndex& lines, const XpField* fields,
                          int32_t n_fields, char delimiter, const XpTextOutputs& out,
                          int threads);

}  // namespace lamfast
