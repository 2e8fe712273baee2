#include "xmatch.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "parallel.hpp"

namespace lamfast::xmatch {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDegToRad = kPi / 180.0;
constexpr double kRadToDeg = 180.0 / kPi;
constexpr double kMasToRad = kDegToRad / 3.6e6;
constexpr double kSkyDeg2 = 41252.96124941928;  // 4 pi sr in square degrees
constexpr int64_t kRowsPerThread = 2048;        // below this a thread costs more than it saves
// Candidate windows are widened by this much (degrees) so that rounding in the zone
// and cell arithmetic can never drop a pair; the chord test then decides exactly.
constexpr double kMarginDeg = 1e-9;
// Automatic zone height: about this many catalogue-2 rows per cell. Any height stays
// within [1", 10 deg]: a 1" query then touches few zones even on a dense clump, and the
// zone table (one entry per zone over all declinations) stays small.
constexpr double kRowsPerCell = 1.0;  // measured: 0.5-1 beat 2-4 (fewer candidates per query)
constexpr double kMinHeightDeg = 1.0 / 3600.0;
constexpr double kMaxHeightDeg = 10.0;

inline double wrap_ra(double ra_deg) {
  double w = ra_deg - 360.0 * std::floor(ra_deg / 360.0);
  return w >= 360.0 ? 0.0 : w;  // -1e-17 wraps to 360 - 1e-17, which rounds to 360
}

struct Moved {
  double x, y, z;  // unit vector
  double ra;       // degrees, [0, 360)
  double dec;      // degrees
};

// The one formula for unit vectors (index rows and query rows alike, so that equal
// positions give a chord of exactly 0).
inline void unit_vector(double ra_deg, double dec_deg, double& x, double& y, double& z) {
  const double ra = ra_deg * kDegToRad, dec = dec_deg * kDegToRad;
  const double cd = std::cos(dec);
  x = cd * std::cos(ra);
  y = cd * std::sin(ra);
  z = std::sin(dec);
}

// Row i of p as a unit vector at the target epoch (see Motion).
inline Moved move_row(const Points& p, int64_t i) {
  Moved m{0, 0, 0, wrap_ra(p.ra[i]), p.dec[i]};
  unit_vector(p.ra[i], p.dec[i], m.x, m.y, m.z);
  if (!p.motion.pmra) return m;
  const double pa = p.motion.pmra[i], pd = p.motion.pmdec[i];
  if (std::isnan(pa) || std::isnan(pd)) return m;
  const double t = p.motion.dt[i * p.motion.dt_stride] * kMasToRad;
  const double ve = pa * t, vn = pd * t;  // tangent-plane displacement (radians)
  if (ve == 0.0 && vn == 0.0) return m;
  // east = (-sin ra, cos ra, 0), north = (-sin dec cos ra, -sin dec sin ra, cos dec)
  const double ra = p.ra[i] * kDegToRad, dec = p.dec[i] * kDegToRad;
  const double sa = std::sin(ra), ca = std::cos(ra), sd = std::sin(dec), cd = std::cos(dec);
  const double x = m.x - sa * ve - sd * ca * vn;
  const double y = m.y + ca * ve - sd * sa * vn;
  const double z = m.z + cd * vn;
  const double inv = 1.0 / std::sqrt(x * x + y * y + z * z);
  m.x = x * inv;
  m.y = y * inv;
  m.z = z * inv;
  m.ra = wrap_ra(std::atan2(m.y, m.x) * kRadToDeg);
  m.dec = std::atan2(m.z, std::hypot(m.x, m.y)) * kRadToDeg;
  return m;
}

BadRow bad_in(const Points& p, int64_t begin, int64_t end) {
  const Motion& mo = p.motion;
  for (int64_t i = begin; i < end; ++i) {
    const double ra = p.ra[i], dec = p.dec[i];
    if (!(ra >= -360.0 && ra <= 360.0)) return {i, BadRow::kRa};  // also NaN
    if (!(dec >= -90.0 && dec <= 90.0)) return {i, BadRow::kDec};
    if (!mo.pmra) continue;
    const double dt = mo.dt[i * mo.dt_stride];
    if (!std::isfinite(dt)) return {i, BadRow::kDt};
    // A displacement beyond 1e15 mas (~8000 radians) is a unit error, and its square
    // would overflow the normalisation. NaN (no proper motion) passes. An infinite pm is
    // refused also where dt = 0 (inf * 0 is NaN: it would pass the size test, then make
    // the row's position NaN instead of leaving it unmoved).
    if (std::isinf(mo.pmra[i]) || std::fabs(mo.pmra[i] * dt) > 1e15) return {i, BadRow::kPmra};
    if (std::isinf(mo.pmdec[i]) || std::fabs(mo.pmdec[i] * dt) > 1e15)
      return {i, BadRow::kPmdec};
  }
  return {};
}

// Candidate (chord^2, catalogue-2 row), ordered for ranking with deterministic ties.
struct Hit {
  double d2;
  int64_t id;
  bool operator<(const Hit& o) const { return d2 < o.d2 || (d2 == o.d2 && id < o.id); }
};

inline void prefetch(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

inline double sep_arcsec(double d2) {
  return 2.0 * std::asin(0.5 * std::sqrt(d2)) * kArcsecPerRad;
}

inline double chord2_of(double radius_rad) {
  const double c = 2.0 * std::sin(0.5 * std::min(radius_rad, kPi));
  return c * c;
}

}  // namespace

BadRow find_bad_row(const Points& p, int threads) {
  std::vector<BadRow> found(std::max(1, threads));
  parallel_for(p.n, threads, kRowsPerThread,
               [&](int64_t b, int64_t e, int t) { found[t] = bad_in(p, b, e); });
  for (const BadRow& f : found)  // threads own increasing row blocks: first hit wins
    if (f.row >= 0) return f;
  return {};
}

void propagate(const Points& p, double* ra_out, double* dec_out, int threads) {
  parallel_for(p.n, threads, kRowsPerThread, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const Moved m = move_row(p, i);
      ra_out[i] = m.ra;
      dec_out[i] = m.dec;
    }
  });
}

// ---------------------------------------------------------------------------------
// Index layout

// Zones of height h_deg, each with cells at least h_deg wide at its widest edge, and the
// span of occupied cells per zone (only that span gets directory entries).
void ZoneIndex::layout_zones(const double* ra, const double* dec, int64_t n, double h_deg,
                             int threads) {
  h_deg_ = h_deg;
  inv_h_ = 1.0 / h_deg;
  const int nz = std::max(1, static_cast<int>(std::ceil(180.0 / h_deg)));
  zones_.assign(nz, Zone{1, 1.0 / 360.0, std::numeric_limits<int64_t>::max(), -1, 0});
  for (int z = 0; z < nz; ++z) {
    const double lo = -90.0 + z * h_deg, hi = std::min(90.0, lo + h_deg);
    const double widest = (lo <= 0.0 && hi >= 0.0)
                              ? 1.0
                              : std::max(std::cos(lo * kDegToRad), std::cos(hi * kDegToRad));
    const double nb = std::floor(360.0 * std::max(0.0, widest) / h_deg);
    zones_[z].nb = static_cast<int64_t>(std::clamp(nb, 1.0, 1e9));
    zones_[z].cells_per_deg = static_cast<double>(zones_[z].nb) / 360.0;
  }
  // Occupied cell span per zone: per-thread spans, merged.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> span(
      std::max(1, threads), std::vector<std::pair<int64_t, int64_t>>(
                                nz, {std::numeric_limits<int64_t>::max(), -1}));
  parallel_for(n, threads, kRowsPerThread, [&](int64_t b, int64_t e, int t) {
    auto& mine = span[t];
    for (int64_t i = b; i < e; ++i) {
      const int zi = zone_of(dec[i]);
      const int64_t c = cell_of(zones_[zi], wrap_ra(ra[i]));
      mine[zi].first = std::min(mine[zi].first, c);
      mine[zi].second = std::max(mine[zi].second, c);
    }
  });
  for (const auto& mine : span)
    for (int zi = 0; zi < nz; ++zi) {
      zones_[zi].bmin = std::min(zones_[zi].bmin, mine[zi].first);
      zones_[zi].bmax = std::max(zones_[zi].bmax, mine[zi].second);
    }
  int64_t cells = 0;
  for (Zone& z : zones_) {
    if (z.bmin > z.bmax) z.bmin = 1, z.bmax = 0;  // empty zone: no cells
    z.cell0 = cells;
    cells += std::max<int64_t>(0, z.bmax - z.bmin + 1);
  }
  cell_start_.assign(cells + 1, 0);
}

ZoneIndex::ZoneIndex(const double* ra, const double* dec, int64_t n, double zone_height_deg,
                     int threads) {
  if (zone_height_deg > 0) {
    layout_zones(ra, dec, n, std::clamp(zone_height_deg, kMinHeightDeg, kMaxHeightDeg), threads);
  } else {
    // First guess from the whole sky, then rescale to the area actually occupied (a
    // small field gets smaller cells); grow again if the directory gets too large
    // (a small field straddling RA = 0 occupies whole zones).
    const double target = std::max(1.0, n / kRowsPerCell);
    auto clamp_h = [](double h) { return std::clamp(h, kMinHeightDeg, kMaxHeightDeg); };
    double h = clamp_h(std::sqrt(kSkyDeg2 / target));
    layout_zones(ra, dec, n, h, threads);
    h = clamp_h(h * std::sqrt(std::max<double>(1.0, n_cells()) / target));
    layout_zones(ra, dec, n, h, threads);
    while (n_cells() > 4 * target + 64 && h < kMaxHeightDeg) {
      h = clamp_h(h * 1.25);
      layout_zones(ra, dec, n, h, threads);
    }
  }
  // Counting sort of the rows by cell (stable: rows of a cell keep catalogue order).
  // Cells and unit vectors are computed in catalogue order (parallel, sequential reads);
  // only the scatter writes at random.
  std::vector<int64_t> cell(n);
  std::vector<Row> rows(n);
  parallel_for(n, threads, kRowsPerThread, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const Zone& z = zones_[zone_of(dec[i])];
      cell[i] = z.cell0 + cell_of(z, wrap_ra(ra[i])) - z.bmin;
      unit_vector(ra[i], dec[i], rows[i].x, rows[i].y, rows[i].z);
      rows[i].dec = dec[i];
    }
  });
  for (int64_t i = 0; i < n; ++i) ++cell_start_[cell[i] + 1];
  std::partial_sum(cell_start_.begin(), cell_start_.end(), cell_start_.begin());
  std::vector<int64_t> next(cell_start_.begin(), cell_start_.end() - 1);
  ids_.resize(n);
  rows_.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = next[cell[i]]++;
    ids_[p] = i;
    rows_[p] = rows[i];
  }
}

// ---------------------------------------------------------------------------------
// Queries

struct ZoneIndex::Window {
  double ra, dec;     // degrees at the index's epoch, ra in [0, 360)
  double x, y, z;     // unit vector, once has_xyz: without proper motions it is made
  bool has_xyz;       // on first need (most rows of a sparse match never need it)
  int z0, z1;         // zones that the search cap touches
  double half_width;  // RA half-width of the cap (degrees); >= 180: whole zones
};

// Per zone of the query row: the largest RA half-width of a cap of radius r centred
// anywhere in that zone, asin(sin r / cos |dec|) at the zone's most polar edge, or 180
// (whole zones) when the cap can reach a pole.
std::vector<double> ZoneIndex::ra_half_widths(double radius_rad) const {
  const double r_deg = radius_rad * kRadToDeg;
  std::vector<double> half(zones_.size(), 180.0);
  for (size_t z = 0; z < zones_.size(); ++z) {
    const double lo = -90.0 + z * h_deg_, hi = std::min(90.0, lo + h_deg_);
    const double polar = std::max(std::fabs(lo), std::fabs(hi));
    if (polar + r_deg + kMarginDeg >= 90.0) continue;
    const double s = std::sin(radius_rad) / std::cos(polar * kDegToRad);
    if (s < 1.0) half[z] = std::asin(s) * kRadToDeg + kMarginDeg;
  }
  return half;
}

// Row i of q at the index's epoch and the zones and RA half-width its cap of radius
// r_deg (margin included) can touch.
ZoneIndex::Window ZoneIndex::window(const Points& q, int64_t i, double r_deg,
                                    const std::vector<double>& half_width) const {
  Window w;
  if (q.motion.pmra) {
    const Moved m = move_row(q, i);
    w.ra = m.ra, w.dec = m.dec, w.x = m.x, w.y = m.y, w.z = m.z, w.has_xyz = true;
  } else {
    w.ra = wrap_ra(q.ra[i]), w.dec = q.dec[i], w.has_xyz = false;
  }
  w.z0 = zone_of(w.dec - r_deg);
  w.z1 = zone_of(w.dec + r_deg);
  w.half_width = half_width[zone_of(w.dec)];
  return w;
}

// Chord^2 between query row i (window w) and sorted index row p, or +inf when their
// declinations already differ by more than r_deg (no trigonometry needed for that).
inline double ZoneIndex::chord2(const Points& q, int64_t i, Window& w, int64_t p,
                                double r_deg) const {
  const Row& r = rows_[p];
  if (std::fabs(r.dec - w.dec) > r_deg) return std::numeric_limits<double>::infinity();
  if (!w.has_xyz) {
    unit_vector(q.ra[i], q.dec[i], w.x, w.y, w.z);
    w.has_xyz = true;
  }
  const double dx = w.x - r.x, dy = w.y - r.y, dz = w.z - r.z;
  return dx * dx + dy * dy + dz * dz;
}

template <class Visit>
void ZoneIndex::for_each_candidate(const Window& w, Visit&& visit) const {
  auto scan = [&](const Zone& z, int64_t b0, int64_t b1) {
    b0 = std::max(b0, z.bmin);
    b1 = std::min(b1, z.bmax);
    if (b0 > b1) return;
    const int64_t end = cell_start_[z.cell0 + b1 - z.bmin + 1];
    for (int64_t p = cell_start_[z.cell0 + b0 - z.bmin]; p < end; ++p) visit(p);
  };
  for (int zi = w.z0; zi <= w.z1; ++zi) {
    const Zone& z = zones_[zi];
    if (z.bmin > z.bmax) continue;
    if (w.half_width >= 180.0) {
      scan(z, z.bmin, z.bmax);
      continue;
    }
    const double lo = w.ra - w.half_width, hi = w.ra + w.half_width;
    if (lo >= 0.0 && hi < 360.0) {
      scan(z, cell_of(z, lo), cell_of(z, hi));
      continue;
    }
    // The window crosses RA = 0/360: two pieces, unless they meet in one cell.
    const int64_t a = cell_of(z, lo < 0.0 ? lo + 360.0 : lo);
    const int64_t b = cell_of(z, hi >= 360.0 ? hi - 360.0 : hi);
    if (b >= a) {
      scan(z, 0, z.nb - 1);
    } else {
      scan(z, 0, b);
      scan(z, a, z.nb - 1);
    }
  }
}

// Calls on_row(i, window) for rows [begin, end) of q. Random query positions make each
// row wait on two dependent cache misses (its cell's directory entry, then the cell's
// rows), so the loop is software-pipelined: kAhead rows ahead it prefetches the entry,
// and half as far ahead the rows it points to; the misses of many rows then overlap.
template <class OnRow>
void ZoneIndex::for_each_row(const Points& q, int64_t begin, int64_t end, double r_deg,
                             const std::vector<double>& half_width, OnRow&& on_row) const {
  constexpr int64_t kAhead = 16, kRing = 32;  // kRing > kAhead: a slot outlives its use
  Window w[kRing];
  int64_t home[kRing];  // directory entry of the cell holding the row, or -1
  auto locate = [&](int64_t i) {
    const int64_t s = i % kRing;
    w[s] = window(q, i, r_deg, half_width);
    const Zone& z = zones_[zone_of(w[s].dec)];
    const int64_t c = cell_of(z, w[s].ra);
    home[s] = (c >= z.bmin && c <= z.bmax) ? z.cell0 + c - z.bmin : -1;
    if (home[s] >= 0) prefetch(&cell_start_[home[s]]);
  };
  auto fetch_rows = [&](int64_t i) {
    const int64_t s = i % kRing;
    if (home[s] >= 0) prefetch(rows_.data() + cell_start_[home[s]]);
  };
  for (int64_t i = begin; i < std::min(end, begin + kAhead); ++i) locate(i);
  for (int64_t i = begin; i < std::min(end, begin + kAhead / 2); ++i) fetch_rows(i);
  for (int64_t i = begin; i < end; ++i) {
    if (i + kAhead < end) locate(i + kAhead);
    if (i + kAhead / 2 < end) fetch_rows(i + kAhead / 2);
    on_row(i, w[i % kRing]);
  }
}

void ZoneIndex::nearest(const Points& q, double radius_rad, int k, int64_t* idx2,
                        double* sep, int threads) const {
  const double c2 = chord2_of(radius_rad), r_deg = radius_rad * kRadToDeg + kMarginDeg;
  const std::vector<double> half = ra_half_widths(radius_rad);
  parallel_for(q.n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int) {
    // No row has more than size() neighbours: a huge k costs output slots, not scratch.
    const int kept = static_cast<int>(std::min<int64_t>(k, size()));
    std::vector<Hit> best(kept);  // sorted, first `found` valid
    for_each_row(q, begin, end, r_deg, half, [&](int64_t i, Window& w) {
      int found = 0;
      for_each_candidate(w, [&](int64_t p) {
        const double d2 = chord2(q, i, w, p, r_deg);
        if (!(d2 <= c2)) return;
        const Hit h{d2, ids_[p]};
        if (found == kept && !(h < best[kept - 1])) return;
        int pos = found < kept ? found++ : kept - 1;
        for (; pos > 0 && h < best[pos - 1]; --pos) best[pos] = best[pos - 1];
        best[pos] = h;
      });
      for (int s = 0; s < k; ++s) {
        idx2[i * k + s] = s < found ? best[s].id : -1;
        sep[i * k + s] =
            s < found ? sep_arcsec(best[s].d2) : std::numeric_limits<double>::quiet_NaN();
      }
    });
  });
}

ZoneIndex::Pairs ZoneIndex::all(const Points& q, double radius_rad, int64_t idx1_offset,
                                int threads) const {
  const double c2 = chord2_of(radius_rad), r_deg = radius_rad * kRadToDeg + kMarginDeg;
  const std::vector<double> half = ra_half_widths(radius_rad);
  std::vector<Pairs> per_thread(std::max(1, threads));
  parallel_for(q.n, threads, kRowsPerThread, [&](int64_t begin, int64_t end, int t) {
    Pairs& out = per_thread[t];
    std::vector<Hit> hits;
    for_each_row(q, begin, end, r_deg, half, [&](int64_t i, Window& w) {
      hits.clear();
      for_each_candidate(w, [&](int64_t p) {
        const double d2 = chord2(q, i, w, p, r_deg);
        if (d2 <= c2) hits.push_back({d2, ids_[p]});
      });
      std::sort(hits.begin(), hits.end());
      for (const Hit& h : hits) {
        out.idx1.push_back(idx1_offset + i);
        out.idx2.push_back(h.id);
        out.sep_arcsec.push_back(sep_arcsec(h.d2));
      }
    });
  });
  // Threads own increasing row blocks: concatenating in thread order keeps row order.
  Pairs all = std::move(per_thread[0]);
  for (size_t t = 1; t < per_thread.size(); ++t) {
    const Pairs& p = per_thread[t];
    all.idx1.insert(all.idx1.end(), p.idx1.begin(), p.idx1.end());
    all.idx2.insert(all.idx2.end(), p.idx2.begin(), p.idx2.end());
    all.sep_arcsec.insert(all.sep_arcsec.end(), p.sep_arcsec.begin(), p.sep_arcsec.end());
  }
  return all;
}

std::vector<int64_t> one_to_one(const int64_t* idx1, const int64_t* idx2, const double* sep,
                                int64_t n) {
  struct Pair {  // sorted by value (not through an index): far fewer cache misses
    double sep;
    int64_t i1, i2, pos;
    // A strict weak order also with NaN separations (which go last): std::sort over a
    // plain `<` that NaN breaks may read past the range. Position breaks exact ties
    // (duplicate pairs), so which copy is kept does not depend on the sort algorithm.
    bool operator<(const Pair& o) const {
      const bool nan = sep != sep, o_nan = o.sep != o.sep;
      if (nan != o_nan) return o_nan;
      if (!nan && sep != o.sep) return sep < o.sep;
      if (i1 != o.i1) return i1 < o.i1;
      return i2 != o.i2 ? i2 < o.i2 : pos < o.pos;
    }
  };
  std::vector<Pair> pairs(n);
  for (int64_t p = 0; p < n; ++p) pairs[p] = {sep[p], idx1[p], idx2[p], p};
  // "Taken" flags per row of either side. Rows are >= 0 (the binding checks). Dense
  // row numbers index the flags directly; sparse or huge ones (a chunk offset near
  // 2^62) go through their rank among the distinct rows, so memory stays O(n).
  struct Taken {
    std::vector<int64_t> rows;  // sorted distinct rows, or empty: direct indexing
    std::vector<bool> used;
    Taken(const std::vector<Pair>& pairs, int64_t Pair::*side) {
      int64_t most = -1;
      for (const Pair& p : pairs) most = std::max(most, p.*side);
      const int64_t n = static_cast<int64_t>(pairs.size());
      if (most < 4 * n + 1024) {
        used.assign(static_cast<size_t>(most + 1), false);
        return;
      }
      rows.reserve(pairs.size());
      for (const Pair& p : pairs) rows.push_back(p.*side);
      std::sort(rows.begin(), rows.end());
      rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
      used.assign(rows.size(), false);
    }
    std::vector<bool>::reference operator[](int64_t r) {
      if (rows.empty()) return used[static_cast<size_t>(r)];
      return used[static_cast<size_t>(std::lower_bound(rows.begin(), rows.end(), r) -
                                      rows.begin())];
    }
  };
  Taken used1(pairs, &Pair::i1), used2(pairs, &Pair::i2);
  std::sort(pairs.begin(), pairs.end());
  std::vector<int64_t> kept;
  for (const Pair& p : pairs) {
    auto u1 = used1[p.i1], u2 = used2[p.i2];
    if (u1 || u2) continue;
    u1 = true;
    u2 = true;
    kept.push_back(p.pos);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace lamfast::xmatch
