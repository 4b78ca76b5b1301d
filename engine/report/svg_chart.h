// Charts as inline SVG for `melgraph report`: line charts over steps (gaps at non-finite
// values, horizontal reference lines, a legend), histograms and scatter plots. Plain SVG 1.1
// elements only, so any browser draws them without a script; coordinates are written with one
// decimal (a tenth of a pixel) so that a page of many charts stays small.
#pragma once
#include <array>
#include <string>
#include <vector>

namespace mg::report {

// v with `decimals` digits after the point ("%.*f"), never "-0".
std::string fixed(double v, int decimals);

// Axis ticks at "nice" values (1, 2 or 5 times a power of ten) that cover [lo, hi] with about
// `target` intervals; `integer` keeps the step at 1 or more (steps of training). The range
// [values.front(), values.back()] contains [lo, hi]. lo == hi is widened around the value.
struct Ticks {
  std::vector<double> values;
  double step = 1;
};
Ticks nice_ticks(double lo, double hi, int target = 5, bool integer = false);
// A tick's label with as many decimals as the step needs ("0.25", "1e-05" for tiny steps).
std::string tick_label(double v, double step);

// Distinct categorical colours (the first ones for the main line of a chart), and the grey of
// "other" and of references without a colour of their own.
inline constexpr std::array<const char*, 12> kPalette = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                         "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                                         "#bcbd22", "#7f7f7f", "#393b79", "#ad494a"};
inline constexpr const char* kOtherColor = "#bbbbbb";

struct Series {
  std::string label;
  std::vector<double> x, y;  // same length, x ascending; a non-finite y is a gap in the line
  std::string color = kPalette[0];
  double width = 1.5;
  double opacity = 1;
  bool markers = false;  // a dot at every point (series of few points, e.g. validations)
};

// A horizontal line across the plot at y, labelled at its right end and in the legend.
struct ReferenceLine {
  std::string label;
  double y = 0;
  std::string color = kOtherColor;
};

struct LineChart {
  std::string x_label = "step";
  std::vector<Series> series;
  std::vector<ReferenceLine> references;
  int width = 580, height = 260;  // the plot with its axes; the legend adds below
};
std::string line_chart_svg(const LineChart& c);

// Counts of `values` in `bins` equal bins over a nice range around them; the markers are
// vertical lines (at x = their y) with their labels.
struct Histogram {
  std::string x_label;
  std::vector<double> values;
  int bins = 50;
  std::vector<ReferenceLine> markers;
  int width = 640, height = 280;
};
std::string histogram_svg(const Histogram& h);

struct ScatterPoint {
  double x = 0, y = 0;
  int group = -1;            // index into Scatter::groups; -1: kOtherColor
  bool highlighted = false;  // drawn larger with a dark outline, on top
  std::string tooltip;       // the point's <title> (shown on hover)
};
struct ScatterGroup {
  std::string label, color;
};
// Both axes at the same scale, so that distances on the page are distances in the plane.
struct Scatter {
  std::string x_label, y_label;
  std::vector<ScatterPoint> points;
  std::vector<ScatterGroup> groups;  // legend order
  std::string highlighted_label;     // legend text of the outlined marker; empty: none drawn
  int plot_size = 620;               // the square plot; the legend sits to its right
};
std::string scatter_svg(const Scatter& s);

}  // namespace mg::report
