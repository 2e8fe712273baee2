// Positional sky cross-match: a declination-zone index of catalogue 2 (zones of height
// h, each cut into RA cells about h wide, rows bucketed by cell), queried by rows of
// catalogue 1 that are optionally moved to the index's epoch with their proper motions.
// Pure C++17, no Python.
//
// Geometry: every position is a unit vector; a pair matches when its chord length
// c = |u1 - u2| satisfies c^2 <= (2 sin(r/2))^2, and its separation is 2 asin(c/2)
// (exact to ~1e-16 rad at any angle, unlike acos of a dot product). The zones and RA
// cells only choose candidates, with a safety margin; the chord test decides.
//
// Determinism: candidates of one query row are ranked by (chord^2, index in catalogue 2);
// every output row depends only on its own input row, and threads own contiguous row
// blocks that are concatenated in order, so results do not depend on the thread count
// or on how catalogue 1 is cut into chunks.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace lamfast::xmatch {

constexpr double kArcsecPerRad = 206264.80624709636;

// Optional epoch propagation of query rows: linear space motion on the sphere,
// u(t) = normalize(u + dt * (pmra * east + pmdec * north)), which is what ERFA's
// pmsafe/starpm (astropy apply_space_motion) does for zero radial velocity. A row
// with NaN pmra or pmdec is not moved.
struct Motion {
  const double* pmra = nullptr;   // [n] mas/yr, includes cos(dec); null = no motion
  const double* pmdec = nullptr;  // [n] mas/yr
  const double* dt = nullptr;     // years to move by (epoch_to - epoch_from)
  int64_t dt_stride = 0;          // 0: dt[0] for every row; 1: per-row dt
};

// A batch of catalogue-1 rows (degrees).
struct Points {
  const double* ra = nullptr;
  const double* dec = nullptr;
  int64_t n = 0;
  Motion motion;
};

// First offending row; what names the field.
struct BadRow {
  enum What : int { kNone = 0, kRa, kDec, kPmra, kPmdec, kDt };
  int64_t row = -1;
  int what = kNone;
};

// Smallest row with a non-finite or out-of-range value: ra outside [-360, 360], dec
// outside [-90, 90], infinite pm or |pm * dt| > 1e15 mas (NaN pm is allowed: "no
// motion"), non-finite dt.
BadRow find_bad_row(const Points& p, int threads);

// Moves rows by their motion; ra_out in [0, 360), dec_out in [-90, 90] (degrees).
void propagate(const Points& p, double* ra_out, double* dec_out, int threads);

class ZoneIndex {
 public:
  // zone_height_deg <= 0 picks one from the catalogue's density (about one row per
  // cell over the area it occupies); any height is kept within [1 arcsec, 10 deg].
  // Coordinates must pass find_bad_row.
  ZoneIndex(const double* ra, const double* dec, int64_t n, double zone_height_deg,
            int threads);

  int64_t size() const { return static_cast<int64_t>(ids_.size()); }
  double zone_height_deg() const { return h_deg_; }
  int64_t n_cells() const { return static_cast<int64_t>(cell_start_.size()) - 1; }

  // For each row i, its k nearest catalogue-2 rows within radius_rad, closest first,
  // written at [i*k, i*k + k): idx2 = -1 and sep = NaN for missing slots.
  void nearest(const Points& q, double radius_rad, int k, int64_t* idx2,
               double* sep_arcsec, int threads) const;

  // Every pair within radius_rad, ordered by (row of q, separation, idx2); idx1 counts
  // from idx1_offset.
  struct Pairs {
    std::vector<int64_t> idx1, idx2;
    std::vector<double> sep_arcsec;
  };
  Pairs all(const Points& q, double radius_rad, int64_t idx1_offset, int threads) const;

 private:
  struct Row {
    double x, y, z;  // unit vector
    double dec;      // degrees: a cheap first test before the chord
  };
  struct Zone {
    int64_t nb;            // RA cells around the full circle
    double cells_per_deg;  // nb / 360
    int64_t bmin, bmax;    // first and last occupied cell (bmin > bmax: empty zone)
    int64_t cell0;         // index of cell bmin in cell_start_
  };
  struct Window;  // one query's candidate search, see xmatch.cpp

  template <class Visit>
  void for_each_candidate(const Window& w, Visit&& visit) const;
  Window window(const Points& q, int64_t i, double r_deg,
                const std::vector<double>& half_width) const;
  double chord2(const Points& q, int64_t i, Window& w, int64_t p, double r_deg) const;
  std::vector<double> ra_half_widths(double radius_rad) const;

  template <class OnRow>
  void for_each_row(const Points& q, int64_t begin, int64_t end, double r_deg,
                    const std::vector<double>& half_width, OnRow&& on_row) const;

  // Defined here so that they inline into the query loops (the library is built -fPIC).
  // Both map NaN to 0 (never produced from valid input; no undefined cast if it is).
  int zone_of(double dec_deg) const {
    const double z = std::floor((dec_deg + 90.0) * inv_h_);
    const double last = static_cast<double>(zones_.size()) - 1.0;
    return z > 0.0 ? static_cast<int>(std::min(z, last)) : 0;
  }
  static int64_t cell_of(const Zone& z, double ra_wrapped_deg) {
    const double b = std::floor(ra_wrapped_deg * z.cells_per_deg);
    return b > 0.0 ? std::min(static_cast<int64_t>(b), z.nb - 1) : 0;
  }
  void layout_zones(const double* ra, const double* dec, int64_t n, double h_deg,
                    int threads);

  double h_deg_ = 0, inv_h_ = 0;
  std::vector<Zone> zones_;
  std::vector<int64_t> cell_start_;  // [n_cells + 1] first sorted row of each cell
  std::vector<Row> rows_;            // [n] rows in cell order
  std::vector<int64_t> ids_;         // [n] catalogue-2 row of each sorted row
};

// One-to-one selection among candidate pairs: visit pairs by (sep, idx1, idx2) and keep
// a pair when neither side is taken yet. Returns the positions of kept pairs, sorted.
std::vector<int64_t> one_to_one(const int64_t* idx1, const int64_t* idx2,
                                const double* sep, int64_t n);

}  // namespace lamfast::xmatch
