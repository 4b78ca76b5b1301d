#include "engine/report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "engine/report/html.h"

namespace mg::report {

namespace {

constexpr int kLegendRow = 16;
constexpr double kCharWidth = 6.5;  // of the 11 px sans-serif legend text, roughly, for layout

// Pixel coordinates: a tenth of a pixel is below what a screen shows.
std::string px(double v) { return fixed(v, 1); }

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
};

// Maps data to pixels: x to [left, left + w], y to [top + h, top] (up is larger).
struct Frame {
  double left, top, w, h;
  double x0, x1, y0, y1;
  double x(double v) const { return left + (v - x0) / (x1 - x0) * w; }
  double y(double v) const { return top + h - (v - y0) / (y1 - y0) * h; }
};

std::string svg_open(int width, int height) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
         std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
         "\" font-family=\"sans-serif\" font-size=\"11\">\n";
}

std::string text(double x, double y, const std::string& s, const char* anchor = "start",
                 const std::string& extra = "") {
  return "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" + html_escape(s) +
         "</text>\n";
}

// The frame's box, grid lines and tick labels on both axes, and the x axis' label.
std::string axes(const Frame& f, const Ticks& xt, const Ticks& yt, const std::string& x_label) {
  std::string out = "<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  for (const double v : yt.values) {
    const double y = f.y(v);
    out +=
        "<line x1=\"" + px(f.left) + "\" y1=\"" + px(y) + "\" x2=\"" + px(f.left + f.w) + "\" y2=\"" + px(y) + "\"/>\n";
  }
  for (const double v : xt.values) {
    const double x = f.x(v);
    out +=
        "<line x1=\"" + px(x) + "\" y1=\"" + px(f.top) + "\" x2=\"" + px(x) + "\" y2=\"" + px(f.top + f.h) + "\"/>\n";
  }
  out += "</g>\n<rect x=\"" + px(f.left) + "\" y=\"" + px(f.top) + "\" width=\"" + px(f.w) + "\" height=\"" + px(f.h) +
         "\" fill=\"none\" stroke=\"#888\"/>\n<g fill=\"#444\">\n";
  for (const double v : yt.values) out += text(f.left - 5, f.y(v) + 4, tick_label(v, yt.step), "end");
  for (const double v : xt.values) out += text(f.x(v), f.top + f.h + 14, tick_label(v, xt.step), "middle");
  out += text(f.left + f.w / 2, f.top + f.h + 29, x_label, "middle");
  return out + "</g>\n";
}

// One legend entry's width in pixels: the swatch, the text and a gap.
double legend_entry_width(const std::string& label) { return 28 + kCharWidth * static_cast<double>(label.size()) + 14; }

struct LegendEntry {
  std::string label, color;
  bool dashed = false;
};

// Entries left to right, wrapping into rows within `width`; returns the SVG and sets *height.
std::string legend(const std::vector<LegendEntry>& entries, double left, double top, double width, double* height) {
  std::string out;
  double x = left, y = top;
  for (const LegendEntry& e : entries) {
    const double w = legend_entry_width(e.label);
    if (x > left && x + w > left + width) {
      x = left;
      y += kLegendRow;
    }
    out += "<line x1=\"" + px(x) + "\" y1=\"" + px(y + 8) + "\" x2=\"" + px(x + 22) + "\" y2=\"" + px(y + 8) +
           "\" stroke=\"" + e.color + "\" stroke-width=\"2\"" + (e.dashed ? " stroke-dasharray=\"5,3\"" : "") + "/>\n";
    out += text(x + 27, y + 12, e.label);
    x += w;
  }
  *height = entries.empty() ? 0 : y - top + kLegendRow + 4;
  return out;
}

// A polyline of one run of finite points. Points that land in the same pixel column collapse to
// the first, lowest, highest and last of them: the drawn line is the same, and a run of a
// hundred thousand steps does not write a hundred thousand points.
std::string polyline(const std::vector<std::pair<double, double>>& pts, const Series& s) {
  std::string out = "<polyline fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"" + fixed(s.width, 1) +
                    "\" stroke-linejoin=\"round\"" +
                    (s.opacity < 1 ? " stroke-opacity=\"" + fixed(s.opacity, 2) + "\"" : std::string()) + " points=\"";
  auto put = [&](const std::pair<double, double>& p) { out += px(p.first) + "," + px(p.second) + " "; };
  for (size_t i = 0; i < pts.size();) {
    size_t j = i;
    size_t lo = i, hi = i;
    while (j < pts.size() && std::floor(pts[j].first) == std::floor(pts[i].first)) {
      if (pts[j].second < pts[lo].second) lo = j;
      if (pts[j].second > pts[hi].second) hi = j;
      ++j;
    }
    std::vector<size_t> keep = {i, lo, hi, j - 1};
    std::sort(keep.begin(), keep.end());
    keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
    for (const size_t k : keep) put(pts[k]);
    i = j;
  }
  if (out.back() == ' ') out.pop_back();
  return out + "\"/>\n";
}

// The series as polylines split at non-finite values; a point between two gaps is a dot, so
// that it shows at all.
std::string series_svg(const Frame& f, const Series& s) {
  std::string out;
  std::vector<std::pair<double, double>> run;
  auto flush = [&] {
    if (run.size() == 1) {
      out += "<circle cx=\"" + px(run[0].first) + "\" cy=\"" + px(run[0].second) + "\" r=\"2.5\" fill=\"" + s.color +
             "\"/>\n";
    } else if (run.size() > 1) {
      out += polyline(run, s);
    }
    run.clear();
  };
  for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
    if (std::isfinite(s.y[i]) && std::isfinite(s.x[i])) {
      run.emplace_back(f.x(s.x[i]), f.y(s.y[i]));
    } else {
      flush();
    }
  }
  flush();
  if (s.markers) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      char tip[96];
      std::snprintf(tip, sizeof tip, "step %.0f: %.6g", s.x[i], s.y[i]);
      out += "<circle cx=\"" + px(f.x(s.x[i])) + "\" cy=\"" + px(f.y(s.y[i])) + "\" r=\"3\" fill=\"" + s.color +
             "\"><title>" + html_escape(s.label) + ", " + tip + "</title></circle>\n";
    }
  }
  return out;
}

// Reference lines, their labels moved apart vertically where they would overlap.
std::string references_svg(const Frame& f, const std::vector<ReferenceLine>& refs) {
  std::vector<std::pair<double, const ReferenceLine*>> at;
  for (const ReferenceLine& r : refs)
    if (std::isfinite(r.y)) at.emplace_back(f.y(r.y), &r);
  std::sort(at.begin(), at.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out;
  double last_label = -1e9;
  for (const auto& [y, r] : at) {
    out += "<line x1=\"" + px(f.left) + "\" y1=\"" + px(y) + "\" x2=\"" + px(f.left + f.w) + "\" y2=\"" + px(y) +
           "\" stroke=\"" + r->color + "\" stroke-width=\"1.2\" stroke-dasharray=\"5,3\"/>\n";
    const double label_y = std::max(y - 3, last_label + 11);
    last_label = label_y;
    char value[32];
    std::snprintf(value, sizeof value, " %.4g", r->y);
    out += text(f.left + f.w - 4, label_y, r->label + value, "end", " fill=\"" + r->color + "\"");
  }
  return out;
}

// At most `max_bytes` of s, cut at a character boundary, with an ellipsis when cut.
std::string shortened(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t n = max_bytes - 1;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;  // not inside a UTF-8 sequence
  return s.substr(0, n) + "\xE2\x80\xA6";
}

}  // namespace

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s(buf);
  if (s.find_first_not_of("-0.") == std::string::npos && s.front() == '-') s.erase(0, 1);
  return s;
}

Ticks nice_ticks(double lo, double hi, int target, bool integer) {
  Ticks t;
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = hi = 0;
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo <= std::max(std::abs(lo), std::abs(hi)) * 1e-12) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  t.step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
  if (integer) t.step = std::max(1.0, std::round(t.step));
  // The tolerance absorbs rounding in lo / step (a bound that is a multiple of the step gets no
  // extra tick); values are the doubles nearest to the decimals the labels print, so that a
  // bound like -2.4 is covered by the tick -2.4 and not missed by k * step = -2.4000000000000004.
  const double first = std::floor(lo / t.step + 1e-12);
  const double last = std::ceil(hi / t.step - 1e-12);
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(t.step) + 1e-9)));
  const double scale = std::pow(10.0, decimals);
  for (double k = first; k <= last; ++k)
    t.values.push_back(decimals <= 22 ? std::round(k * t.step * scale) / scale : k * t.step);
  return t;
}

std::string tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0;
  const double mag = std::abs(step);
  if (mag >= 1e6 || mag < 1e-4) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(mag) + 1e-9)));
  return fixed(v, decimals);
}

std::string line_chart_svg(const LineChart& c) {
  Range xr, yr;
  for (const Series& s : c.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      xr.add(s.x[i]);
      yr.add(s.y[i]);
    }
  }
  for (const ReferenceLine& r : c.references) yr.add(r.y);
  if (xr.empty()) {
    for (const Series& s : c.series)
      for (const double x : s.x) xr.add(x);
  }
  if (xr.empty()) xr.add(0);
  if (yr.empty()) yr.add(0);
  const Ticks xt = nice_ticks(xr.lo, xr.hi, 6, true);
  const Ticks yt = nice_ticks(yr.lo, yr.hi, 5);
  const Frame f{64,
                10,
                c.width - 64.0 - 14,
                c.height - 10.0 - 36,
                xt.values.front(),
                xt.values.back(),
                yt.values.front(),
                yt.values.back()};

  std::vector<LegendEntry> entries;
  for (const Series& s : c.series) entries.push_back({s.label, s.color, false});
  for (const ReferenceLine& r : c.references) entries.push_back({r.label, r.color, true});
  double legend_height = 0;
  const std::string legend_svg = legend(entries, f.left, c.height, f.w, &legend_height);

  std::string out = svg_open(c.width, c.height + static_cast<int>(std::ceil(legend_height)));
  out += axes(f, xt, yt, c.x_label);
  out += references_svg(f, c.references);
  for (const Series& s : c.series) out += series_svg(f, s);
  if (yr.lo == 0 && yr.hi == 0 && c.references.empty()) {
    bool any = false;
    for (const Series& s : c.series)
      for (const double v : s.y) any = any || std::isfinite(v);
    if (!any) out += text(f.left + f.w / 2, f.top + f.h / 2, "no finite values", "middle", " fill=\"#888\"");
  }
  out += legend_svg;
  return out + "</svg>\n";
}

std::string histogram_svg(const Histogram& h) {
  Range r;
  for (const double v : h.values) r.add(v);
  if (r.empty()) r.add(0);
  const Ticks xt = nice_ticks(r.lo, r.hi, 8);
  const double x0 = xt.values.front(), x1 = xt.values.back();
  const int bins = std::max(1, h.bins);
  std::vector<int64_t> counts(static_cast<size_t>(bins), 0);
  for (const double v : h.values) {
    if (!std::isfinite(v)) continue;
    const auto b = static_cast<int64_t>(std::floor((v - x0) / (x1 - x0) * bins));
    ++counts[static_cast<size_t>(std::clamp<int64_t>(b, 0, bins - 1))];
  }
  const int64_t top = std::max<int64_t>(1, *std::max_element(counts.begin(), counts.end()));
  const Ticks yt = nice_ticks(0, static_cast<double>(top), 4, true);
  const Frame f{64, 10, h.width - 64.0 - 14, h.height - 10.0 - 36, x0, x1, 0, yt.values.back()};

  std::vector<LegendEntry> entries;
  for (const ReferenceLine& m : h.markers) entries.push_back({m.label, m.color, true});
  double legend_height = 0;
  const std::string legend_svg = legend(entries, f.left, h.height, f.w, &legend_height);

  std::string out = svg_open(h.width, h.height + static_cast<int>(std::ceil(legend_height)));
  out += axes(f, xt, yt, h.x_label);
  out += "<g fill=\"" + std::string(kPalette[0]) + "\" fill-opacity=\"0.75\">\n";
  const double bw = (x1 - x0) / bins;
  for (int b = 0; b < bins; ++b) {
    const int64_t n = counts[static_cast<size_t>(b)];
    if (n == 0) continue;
    const double xa = f.x(x0 + b * bw), xb = f.x(x0 + (b + 1) * bw), y = f.y(static_cast<double>(n));
    char tip[96];
    std::snprintf(tip, sizeof tip, "[%.3f, %.3f): %lld", x0 + b * bw, x0 + (b + 1) * bw, static_cast<long long>(n));
    out += "<rect x=\"" + px(xa) + "\" y=\"" + px(y) + "\" width=\"" + px(std::max(0.5, xb - xa - 0.5)) +
           "\" height=\"" + px(f.top + f.h - y) + "\"><title>" + tip + "</title></rect>\n";
  }
  out += "</g>\n";
  for (const ReferenceLine& m : h.markers) {
    if (!std::isfinite(m.y)) continue;
    const double x = f.x(m.y);
    out += "<line x1=\"" + px(x) + "\" y1=\"" + px(f.top) + "\" x2=\"" + px(x) + "\" y2=\"" + px(f.top + f.h) +
           "\" stroke=\"" + m.color + "\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\"/>\n";
  }
  out += legend_svg;
  return out + "</svg>\n";
}

std::string scatter_svg(const Scatter& s) {
  Range xr, yr;
  for (const ScatterPoint& p : s.points) {
    xr.add(p.x);
    yr.add(p.y);
  }
  if (xr.empty()) xr.add(0);
  if (yr.empty()) yr.add(0);
  // One scale for both axes: the wider range decides it, the other is centred.
  const double half = std::max({xr.hi - xr.lo, yr.hi - yr.lo, 1e-12}) * 0.53;
  const double xc = (xr.lo + xr.hi) / 2, yc = (yr.lo + yr.hi) / 2;
  const Ticks xt = nice_ticks(xc - half, xc + half, 6);
  const Ticks yt = nice_ticks(yc - half, yc + half, 6);
  const double span = std::max(xt.values.back() - xt.values.front(), yt.values.back() - yt.values.front());
  const double size = s.plot_size;
  const Frame f{64, 10, size, size, xc - span / 2, xc + span / 2, yc - span / 2, yc + span / 2};
  Ticks xin, yin;  // the ticks that fall inside the square frame
  for (const double v : xt.values)
    if (v >= f.x0 - 1e-12 * span && v <= f.x1 + 1e-12 * span) xin.values.push_back(v);
  for (const double v : yt.values)
    if (v >= f.y0 - 1e-12 * span && v <= f.y1 + 1e-12 * span) yin.values.push_back(v);
  xin.step = xt.step;
  yin.step = yt.step;

  const double legend_left = f.left + size + 20;
  const int width = static_cast<int>(legend_left + 250);
  std::string out = svg_open(width, static_cast<int>(size + 10 + 36));
  out += axes(f, xin, yin, s.x_label);
  out += text(14, f.top + size / 2, s.y_label, "middle",
              " transform=\"rotate(-90 14 " + px(f.top + size / 2) + ")\" fill=\"#444\"");
  auto point = [&](const ScatterPoint& p) {
    const char* color = p.group >= 0 && static_cast<size_t>(p.group) < s.groups.size()
                            ? s.groups[static_cast<size_t>(p.group)].color.c_str()
                            : kOtherColor;
    std::string attrs = p.highlighted ? "\" r=\"4.5\" stroke=\"#000\" stroke-width=\"1.6\" fill=\""
                                      : "\" r=\"3\" fill-opacity=\"0.8\" fill=\"";
    return "<circle cx=\"" + px(f.x(p.x)) + "\" cy=\"" + px(f.y(p.y)) + attrs + color + "\"><title>" +
           html_escape(p.tooltip) + "</title></circle>\n";
  };
  for (const ScatterPoint& p : s.points)
    if (!p.highlighted && std::isfinite(p.x) && std::isfinite(p.y)) out += point(p);
  for (const ScatterPoint& p : s.points)
    if (p.highlighted && std::isfinite(p.x) && std::isfinite(p.y)) out += point(p);

  double y = f.top + 4;
  for (const ScatterGroup& g : s.groups) {
    out += "<circle cx=\"" + px(legend_left + 6) + "\" cy=\"" + px(y + 4) + "\" r=\"4\" fill=\"" + g.color + "\"/>\n";
    out += text(legend_left + 16, y + 8, shortened(g.label, 34));
    y += kLegendRow;
  }
  if (!s.highlighted_label.empty()) {
    y += 6;
    out += "<circle cx=\"" + px(legend_left + 6) + "\" cy=\"" + px(y + 4) +
           "\" r=\"4.5\" fill=\"#fff\" stroke=\"#000\" stroke-width=\"1.6\"/>\n";
    out += text(legend_left + 16, y + 8, s.highlighted_label);
  }
  return out + "</svg>\n";
}

}  // namespace mg::report
