//! The Grafana dashboard (`k8s/monitoring/grafana-dashboard.json`) drawn
//! without Grafana, for the monitoring test's picture
//! (`docs/img/dashboard.png`).
//!
//! Grafana cannot run here, so the test draws the dashboard's panels itself:
//! [`render`] reads every panel of the JSON in order, evaluates each
//! target's `expr` against a real [`Prometheus`] (`/api/v1/query_range` over
//! a [`Window`] for time series and state timelines, `/api/v1/query` at its
//! end for stats), with the dashboard's variables substituted as Grafana
//! would ([`substitute`]), and writes one self-contained HTML page
//! ([`page`]): inline CSS, inline SVG charts, no script and no other asset.
//! Panels sit where their `gridPos` puts them on Grafana's 24-column grid
//! ([`layout`]), scaled to [`PAGE_WIDTH`]; rows are section headings.
//!
//! What is drawn is Grafana-like, not Grafana: series named by each
//! target's `legendFormat`, values formatted by the panel's unit (`short`,
//! `s`, `reqps`, `ops`, `percentunit`), stat colours from the panel's value
//! mappings and thresholds. Every text that comes from the JSON or from
//! Prometheus goes through [`escape`].

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::prometheus::Prometheus;

/// The page's width in CSS pixels: the grid, its margins and the page's
/// padding.
pub const PAGE_WIDTH: u32 = 1600;
/// The page's padding around the grid.
const PAGE_PADDING: f64 = 16.0;
/// The height of the page's header, above the grid.
const HEADER_HEIGHT: f64 = 64.0;
/// Grafana's grid: 24 columns, rows of 30 px, 8 px between panels.
const GRID_COLUMNS: f64 = 24.0;
const CELL_HEIGHT: f64 = 30.0;
const MARGIN: f64 = 8.0;
/// A panel's title bar.
const TITLE_HEIGHT: f64 = 30.0;
/// One line of a legend (12 px text).
const LEGEND_LINE: f64 = 18.0;
/// What a legend item takes besides its text: the swatch and the gap.
const LEGEND_ITEM_EXTRA: f64 = 38.0;
/// The width of a character of 12 px sans-serif text, rounded up (text is
/// measured by this estimate: nothing here runs a layout engine).
const CHAR_WIDTH: f64 = 6.8;
/// The width of a character of the 11 px axis labels.
const AXIS_CHAR_WIDTH: f64 = 6.3;
/// At most this many points per series in a range query.
const MAX_POINTS: f64 = 400.0;
/// The scrape interval Grafana assumes for a Prometheus data source that
/// does not set one (`$__rate_interval` is computed from the data source's
/// scrape interval).
pub const GRAFANA_SCRAPE_INTERVAL_SECS: u64 = 15;

/// Grafana's classic palette, in the order it gives series their colours.
const PALETTE: [&str; 10] = [
    "#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0",
    "#37872D", "#FADE2A",
];
/// The theme's text and grid lines.
const TEXT: &str = "#ccccdc";
const GRID_LINE: &str = "rgba(204,204,220,0.12)";

// ---------------------------------------------------------------------------
// The dashboard's panels.

/// What a panel draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Row,
    TimeSeries,
    Stat,
    StateTimeline,
}

/// A panel's place on Grafana's grid (columns of 24, rows of 30 px).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridPos {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// A rectangle on the page, in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// One query of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub expr: String,
    pub legend: String,
}

/// A value mapping (`"type": "value"`): a value shown as `text`, in
/// `color`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub value: String,
    pub text: String,
    pub color: Option<String>,
}

/// One panel of the dashboard, as far as the renderer draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub kind: Kind,
    pub grid: GridPos,
    /// `fieldConfig.defaults.unit` (`short` when unset).
    pub unit: String,
    /// `fieldConfig.defaults.min`.
    pub min: Option<f64>,
    /// `fieldConfig.defaults.custom.fillOpacity`, 0 to 100.
    pub fill_opacity: f64,
    /// `options.rowHeight` of a state timeline (0.9 by default).
    pub row_height: f64,
    pub targets: Vec<Target>,
    pub mappings: Vec<Mapping>,
    /// Threshold steps: from `value` on (`None`: the base), `color`.
    pub thresholds: Vec<(Option<f64>, String)>,
}

impl Panel {
    /// The panel of the dashboard JSON `panel`. Panics on a panel type the
    /// renderer does not draw, or a panel without its grid position or
    /// queries.
    pub fn from_json(panel: &Value) -> Self {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        let kind = match panel["type"].as_str().unwrap_or_default() {
            "row" => Kind::Row,
            "timeseries" => Kind::TimeSeries,
            "stat" => Kind::Stat,
            "state-timeline" => Kind::StateTimeline,
            other => panic!(
                "dashboard panel {title:?}: the test's renderer cannot draw a {other:?} panel \
                 (it draws row, timeseries, stat, state-timeline)"
            ),
        };
        let pos = &panel["gridPos"];
        let coordinate = |key: &str| {
            pos[key].as_f64().unwrap_or_else(|| {
                panic!("dashboard panel {title:?}: no gridPos.{key} (gridPos: {pos})")
            })
        };
        let grid = GridPos {
            x: coordinate("x"),
            y: coordinate("y"),
            w: coordinate("w"),
            h: coordinate("h"),
        };
        let defaults = &panel["fieldConfig"]["defaults"];
        let targets: Vec<Target> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|target| Target {
                expr: target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("dashboard panel {title:?}: a target without expr"))
                    .to_string(),
                legend: target["legendFormat"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        assert!(
            kind == Kind::Row || !targets.is_empty(),
            "dashboard panel {title:?}: no targets"
        );
        let mut mappings = Vec::new();
        for mapping in defaults["mappings"].as_array().into_iter().flatten() {
            if mapping["type"] != "value" {
                continue;
            }
            for (value, option) in mapping["options"].as_object().into_iter().flatten() {
                mappings.push(Mapping {
                    value: value.clone(),
                    text: option["text"].as_str().unwrap_or(value).to_string(),
                    color: option["color"].as_str().map(str::to_string),
                });
            }
        }
        let thresholds = defaults["thresholds"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|step| {
                (
                    step["value"].as_f64(),
                    step["color"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        Self {
            title,
            kind,
            grid,
            unit: defaults["unit"].as_str().unwrap_or("short").to_string(),
            min: defaults["min"].as_f64(),
            fill_opacity: defaults["custom"]["fillOpacity"].as_f64().unwrap_or(0.0),
            row_height: panel["options"]["rowHeight"].as_f64().unwrap_or(0.9),
            targets,
            mappings,
            thresholds,
        }
    }

    /// The value mapping of `value`, if any.
    fn mapping(&self, value: f64) -> Option<&Mapping> {
        self.mappings
            .iter()
            .find(|m| m.value.trim().parse::<f64>().is_ok_and(|v| v == value))
    }

    /// The colour of `value`: its mapping's, else its threshold step's,
    /// else the theme's text colour (a CSS colour, safe in an attribute).
    pub fn value_color(&self, value: f64) -> String {
        if let Some(color) = self.mapping(value).and_then(|m| m.color.as_deref()) {
            return css_color(color);
        }
        let mut found = None;
        for (from, color) in &self.thresholds {
            match from {
                None => found = Some(color),
                Some(from) if value >= *from => found = Some(color),
                Some(_) => {}
            }
        }
        found.map_or_else(|| TEXT.to_string(), |c| css_color(c))
    }

    /// `value` as the panel shows it: its mapping's text, else formatted by
    /// the panel's unit.
    pub fn value_text(&self, value: f64) -> String {
        match self.mapping(value) {
            Some(mapping) => mapping.text.clone(),
            None => format_value(value, &self.unit, None),
        }
    }
}

/// Every panel of `dashboard`, in order (rows included).
pub fn panels(dashboard: &Value) -> Vec<Panel> {
    dashboard["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("the dashboard has no panels"))
        .iter()
        .map(Panel::from_json)
        .collect()
}

/// Where `grid` lands on a page [`PAGE_WIDTH`] wide: Grafana's layout
/// (columns of `(width - 23 margins) / 24`, rows of 30 px, 8 px margins)
/// inside the page's padding, below its header.
pub fn layout(grid: GridPos) -> Rect {
    let container = f64::from(PAGE_WIDTH) - 2.0 * PAGE_PADDING;
    let column = (container - MARGIN * (GRID_COLUMNS - 1.0)) / GRID_COLUMNS;
    Rect {
        left: PAGE_PADDING + grid.x * (column + MARGIN),
        top: HEADER_HEIGHT + grid.y * (CELL_HEIGHT + MARGIN),
        width: grid.w * column + (grid.w - 1.0).max(0.0) * MARGIN,
        height: grid.h * CELL_HEIGHT + (grid.h - 1.0).max(0.0) * MARGIN,
    }
}

// ---------------------------------------------------------------------------
// Variables.

/// The values Grafana gives a dashboard's variables for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Variables {
    /// `$__interval`: the query's step.
    pub interval_secs: u64,
    /// `$__range`: the time range.
    pub range_secs: u64,
    /// The data source's scrape interval, as Grafana knows it.
    pub scrape_interval_secs: u64,
    /// The dashboard's own variables (`templating.list`): name and value.
    pub template: Vec<(String, String)>,
}

impl Variables {
    /// The variables of `dashboard` for a query with step `interval_secs`
    /// over `range_secs`, from a data source that scrapes every
    /// `scrape_interval_secs` ([`GRAFANA_SCRAPE_INTERVAL_SECS`] when it does
    /// not say): the data source variable is the Prometheus the test runs;
    /// any other variable takes all values (`.*`, as Grafana's "All" with a
    /// regex), a constant or text box its value.
    pub fn new(
        dashboard: &Value,
        interval_secs: u64,
        range_secs: u64,
        scrape_interval_secs: u64,
    ) -> Self {
        let template = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|variable| {
                let name = variable["name"].as_str()?.to_string();
                let value = match variable["type"].as_str().unwrap_or_default() {
                    "datasource" => "prometheus".to_string(),
                    "constant" | "textbox" => variable["query"]
                        .as_str()
                        .or_else(|| variable["current"]["value"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    _ => ".*".to_string(),
                };
                Some((name, value))
            })
            .collect();
        Self {
            interval_secs: interval_secs.max(1),
            range_secs: range_secs.max(1),
            scrape_interval_secs: scrape_interval_secs.max(1),
            template,
        }
    }

    /// `$__rate_interval` as Grafana computes it: `max($__interval +
    /// scrape interval, 4 × scrape interval)`.
    pub fn rate_interval_secs(&self) -> u64 {
        (self.interval_secs + self.scrape_interval_secs).max(4 * self.scrape_interval_secs)
    }

    /// The value of variable `name` (without its `$`).
    fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "__rate_interval" => prom_duration(self.rate_interval_secs()),
            "__interval" => prom_duration(self.interval_secs),
            "__interval_ms" => (self.interval_secs * 1000).to_string(),
            "__range" => prom_duration(self.range_secs),
            "__range_s" => self.range_secs.to_string(),
            "__range_ms" => (self.range_secs * 1000).to_string(),
            _ => {
                return self
                    .template
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            }
        })
    }
}

/// `secs` as a PromQL duration: `1h`, `1m`, `90s`.
pub fn prom_duration(secs: u64) -> String {
    if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// `expr` with every variable (`$name`, `${name}`, `${name:format}`)
/// replaced by its value in `vars`; an error naming the first variable it
/// does not know.
pub fn substitute(expr: &str, vars: &Variables) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("an unclosed ${{ in {expr}"))?;
            let inner = &braced[..end];
            let name = inner.split_once(':').map_or(inner, |(name, _)| name);
            (name, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            return Err(format!("a `$` that names no variable in {expr}"));
        }
        let value = vars
            .value(name)
            .ok_or_else(|| format!("the variable ${name} is not known: {expr}"))?;
        out.push_str(&value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Text.

/// `text` safe in HTML and SVG, in text and in attribute values: the
/// escaping of the 402 page.
pub use paygress_core::browser::escape;

/// A colour of the dashboard JSON as CSS: Grafana's named colours as
/// their hex values, `#rgb`/`#rrggbb(aa)` as they are, anything else as the
/// theme's text colour.
pub fn css_color(color: &str) -> String {
    let named = match color {
        "green" => Some("#73BF69"),
        "dark-green" => Some("#37872D"),
        "red" => Some("#F2495C"),
        "dark-red" => Some("#C4162A"),
        "orange" => Some("#FF9830"),
        "dark-orange" => Some("#FA6400"),
        "yellow" => Some("#FADE2A"),
        "dark-yellow" => Some("#E0B400"),
        "blue" => Some("#5794F2"),
        "dark-blue" => Some("#1F60C4"),
        "purple" => Some("#B877D9"),
        "text" => Some(TEXT),
        _ => None,
    };
    if let Some(hex) = named {
        return hex.to_string();
    }
    let hex = color.strip_prefix('#').unwrap_or_default();
    if [3, 6, 8].contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        color.to_string()
    } else {
        TEXT.to_string()
    }
}

/// A series' name from the target's `legendFormat` (`{{label}}` replaced by
/// the label's value, empty when the series has no such label); with no
/// format, the labels as `{a="b"}`, or `expr` when there are none.
pub fn legend_name(format: &str, labels: &Map<String, Value>, expr: &str) -> String {
    if format.trim().is_empty() {
        let pairs: Vec<String> = labels
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
            .collect();
        let name = labels
            .get("__name__")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return if pairs.is_empty() && name.is_empty() {
            expr.to_string()
        } else {
            format!("{name}{{{}}}", pairs.join(", "))
        };
    }
    let mut out = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let label = after[..end].trim();
        out.push_str(
            labels
                .get(label)
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Numbers and axes.

/// `value` formatted for `unit` (Grafana's `short`, `none`, `s`, `reqps`,
/// `ops`, `percentunit`, `percent`; another unit as `short` followed by
/// its name). With `step` (an axis' tick step), as many decimals as the
/// step needs; without, up to three significant ones.
pub fn format_value(value: f64, unit: &str, step: Option<f64>) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let (scaled, scaled_step, suffix): (f64, Option<f64>, String) = match unit {
        "percentunit" => (value * 100.0, step.map(|s| s * 100.0), "%".to_string()),
        "percent" => (value, step, "%".to_string()),
        "s" => {
            // A zero tick takes its neighbours' scale.
            let magnitude = if value == 0.0 {
                step.unwrap_or(0.0).abs()
            } else {
                value.abs()
            };
            let (divisor, name) = if magnitude == 0.0 || magnitude >= 1.0 {
                (1.0, "s")
            } else if magnitude >= 1e-3 {
                (1e-3, "ms")
            } else {
                (1e-6, "µs")
            };
            (value / divisor, step.map(|s| s / divisor), name.to_string())
        }
        _ => {
            let magnitude = value.abs();
            let (divisor, prefix) = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]
                .into_iter()
                .find(|(d, _)| magnitude >= *d)
                .unwrap_or((1.0, ""));
            let name = match unit {
                "reqps" => "req/s",
                "ops" => "ops/s",
                "short" | "none" | "" => "",
                other => other,
            };
            let suffix = match (prefix, name) {
                ("", name) => name.to_string(),
                (prefix, "") => prefix.to_string(),
                (prefix, name) => format!("{prefix} {name}"),
            };
            (value / divisor, step.map(|s| s / divisor), suffix)
        }
    };
    let number = match scaled_step {
        Some(step) => format!("{scaled:.*}", step_decimals(step)),
        None => trim_zeros(&format!("{scaled:.*}", auto_decimals(scaled))),
    };
    let number = if number
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        // No "-0".
        number.trim_start_matches('-').to_string()
    } else {
        number
    };
    match suffix.as_str() {
        "" => number,
        "%" => format!("{number}%"),
        suffix => format!("{number} {suffix}"),
    }
}

/// The decimals that show every multiple of `step` exactly (up to 6).
fn step_decimals(step: f64) -> usize {
    let step = step.abs();
    (0..6)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .map_or(6, |d| d as usize)
}

/// About three significant digits, none for a whole number.
fn auto_decimals(value: f64) -> usize {
    if (value - value.round()).abs() < 1e-9 {
        return 0;
    }
    let magnitude = value.abs().log10().floor();
    (2.0 - magnitude).clamp(0.0, 6.0) as usize
}

fn trim_zeros(number: &str) -> String {
    if number.contains('.') {
        number
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        number.to_string()
    }
}

/// A value axis: from `min` to `max` in steps of `step` (1, 2 or 5 times a
/// power of ten), each a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub min: f64,
    pub max: f64,
    pub step: f64,
    pub ticks: Vec<f64>,
}

/// The axis that shows `low`..`high` with at most `max_ticks` steps: the
/// smallest round step, the ends on multiples of it. A flat range gets one
/// step above it.
pub fn value_axis(low: f64, high: f64, max_ticks: usize) -> Axis {
    let (low, high) = if low.is_finite() && high.is_finite() {
        (low.min(high), low.max(high))
    } else {
        (0.0, 1.0)
    };
    let (low, high) = if high > low {
        (low, high)
    } else {
        (low, low + low.abs().max(1.0))
    };
    let span = high - low;
    let raw = span / max_ticks.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let min = (low / step + 1e-9).floor() * step;
    let mut max = (high / step - 1e-9).ceil() * step;
    if max <= min {
        max = min + step;
    }
    let count = ((max - min) / step).round() as usize;
    let ticks = (0..=count)
        .map(|i| {
            let tick = min + i as f64 * step;
            // 0.30000000000000004 → 0.3
            let decimals = step_decimals(step) as i32 + 1;
            let scale = 10f64.powi(decimals);
            (tick * scale).round() / scale
        })
        .collect();
    Axis {
        min,
        max,
        step,
        ticks,
    }
}

/// Round instants (Unix seconds) between `start` and `end`, at most
/// `max_ticks` of them, every 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min
/// or hours.
pub fn time_ticks(start: f64, end: f64, max_ticks: usize) -> Vec<f64> {
    const STEPS: [f64; 15] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0,
    ];
    let span = (end - start).max(0.0);
    let max_ticks = max_ticks.max(1) as f64;
    let step = STEPS
        .into_iter()
        .find(|s| span / s <= max_ticks)
        .unwrap_or_else(|| (span / max_ticks / 3600.0).ceil() * 3600.0);
    let mut ticks = Vec::new();
    let mut tick = (start / step).ceil() * step;
    while tick <= end {
        ticks.push(tick);
        tick += step;
    }
    ticks
}

/// `HH:MM:SS` (UTC) of Unix time `t`.
pub fn clock(t: f64) -> String {
    let secs = t.round().rem_euclid(86_400.0) as u64;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------
// Data.

/// One series of a range query: `(time, value)` points, NaN kept (a gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    fn has_data(&self) -> bool {
        self.points.iter().any(|(_, v)| v.is_finite())
    }
}

/// One value of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub struct StatValue {
    pub name: String,
    pub value: f64,
}

/// What a panel got from Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A row: nothing to query.
    Heading,
    Series(Vec<Series>),
    Values(Vec<StatValue>),
}

impl Data {
    /// How many series with at least one number, or values, it holds.
    pub fn shown(&self) -> usize {
        match self {
            Data::Heading => 0,
            Data::Series(series) => series.iter().filter(|s| s.has_data()).count(),
            Data::Values(values) => values.len(),
        }
    }
}

fn number(value: &Value) -> f64 {
    value
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .or_else(|| value.as_f64())
        .unwrap_or(f64::NAN)
}

/// The series of a `query_range` answer's `data` (a matrix), named by
/// `legend`.
pub fn matrix_series(data: &Value, legend: &str, expr: &str) -> Vec<Series> {
    let empty = Map::new();
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|series| Series {
            name: legend_name(legend, series["metric"].as_object().unwrap_or(&empty), expr),
            points: series["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|point| (point[0].as_f64().unwrap_or(f64::NAN), number(&point[1])))
                .collect(),
        })
        .collect()
}

/// The values of a `query` answer's `data` (a vector, or a scalar), named
/// by `legend`.
pub fn vector_values(data: &Value, legend: &str, expr: &str) -> Vec<StatValue> {
    let empty = Map::new();
    match data["resultType"].as_str() {
        Some("scalar") => vec![StatValue {
            name: legend_name(legend, &empty, expr),
            value: number(&data["result"][1]),
        }],
        _ => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|sample| StatValue {
                name: legend_name(legend, sample["metric"].as_object().unwrap_or(&empty), expr),
                value: number(&sample["value"][1]),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// Drawing.

/// The time range drawn, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

impl Window {
    /// The step of the range queries: a second, or more for a long window
    /// (at most [`MAX_POINTS`] points).
    pub fn step(&self) -> f64 {
        ((self.end - self.start) / MAX_POINTS).ceil().max(1.0)
    }

    /// The range, in whole seconds (`$__range`).
    pub fn range_secs(&self) -> u64 {
        (self.end - self.start).round().max(1.0) as u64
    }
}

/// How many lines a legend of `names` takes in `width` (an estimate).
fn legend_lines(names: &[String], width: f64) -> usize {
    let mut lines = 1;
    let mut x = 0.0;
    for name in names {
        let item = name.chars().count() as f64 * CHAR_WIDTH + LEGEND_ITEM_EXTRA;
        if x > 0.0 && x + item > width {
            lines += 1;
            x = 0.0;
        }
        x += item;
    }
    lines
}

fn legend_html(items: &[(String, String)]) -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (color, name) in items {
        let _ = write!(
            out,
            "<span class=\"item\"><i style=\"background:{}\"></i>{}</span>",
            escape(color),
            escape(name)
        );
    }
    out.push_str("</div>");
    out
}

fn svg_open(width: f64, height: f64) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\">"
    )
}

/// The time axis along the bottom of a plot from `left` to `left + width`
/// whose baseline is at `bottom`: a grid line and a label per tick.
fn time_axis(out: &mut String, window: Window, left: f64, width: f64, top: f64, bottom: f64) {
    let span = (window.end - window.start).max(1.0);
    let max_ticks = (width / 90.0).floor().max(2.0) as usize;
    // Half a label (`HH:MM:SS`): a tick whose label would run into the
    // value axis, or out of the chart, goes unlabelled.
    let half = 4.0 * AXIS_CHAR_WIDTH;
    for tick in time_ticks(window.start, window.end, max_ticks) {
        let x = left + (tick - window.start) / span * width;
        if x - half < left - 4.0 || x + half > left + width + 10.0 {
            continue;
        }
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"{GRID_LINE}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"axis\">{}</text>",
            bottom + 14.0,
            clock(tick)
        );
    }
}

/// A time series panel's chart, `width` × `height`: value axis and grid,
/// time axis, one line per series (gaps where it has no number), the area
/// below filled at the panel's fill opacity.
pub fn svg_timeseries(
    panel: &Panel,
    series: &[Series],
    window: Window,
    width: f64,
    height: f64,
) -> String {
    let values = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|(_, v)| *v))
            .filter(|v| v.is_finite())
    };
    let low = values().fold(f64::INFINITY, f64::min);
    let high = values().fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = if low.is_finite() {
        (panel.min.unwrap_or(low.min(0.0)), high)
    } else {
        (0.0, 1.0)
    };
    let (top, bottom_gutter, right) = (8.0, 22.0, 12.0);
    let max_ticks = ((height - top - bottom_gutter) / 36.0)
        .floor()
        .clamp(2.0, 6.0) as usize;
    let axis = value_axis(low, high, max_ticks);
    let labels: Vec<String> = axis
        .ticks
        .iter()
        .map(|t| format_value(*t, &panel.unit, Some(axis.step)))
        .collect();
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1);
    let left = widest as f64 * AXIS_CHAR_WIDTH + 12.0;
    let plot_width = (width - left - right).max(10.0);
    let plot_height = (height - top - bottom_gutter).max(10.0);
    let bottom = top + plot_height;
    let span = (window.end - window.start).max(1.0);
    let x_of = |t: f64| left + (t - window.start) / span * plot_width;
    let y_of = |v: f64| top + (1.0 - (v - axis.min) / (axis.max - axis.min)) * plot_height;

    let mut out = svg_open(width, height);
    for (tick, label) in axis.ticks.iter().zip(&labels) {
        let y = y_of(*tick);
        let _ = write!(
            out,
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{GRID_LINE}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"axis\">{}</text>",
            left + plot_width,
            left - 6.0,
            y + 4.0,
            escape(label)
        );
    }
    time_axis(&mut out, window, left, plot_width, top, bottom);

    let gap = 1.5 * window.step();
    let base = y_of(axis.min.max(0.0).min(axis.max));
    for (index, s) in series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        // Runs of consecutive finite points.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last_t = f64::NEG_INFINITY;
        for &(t, v) in &s.points {
            if !v.is_finite() || !t.is_finite() {
                last_t = f64::NEG_INFINITY;
                continue;
            }
            let point = (x_of(t), y_of(v.clamp(axis.min, axis.max)));
            match runs.last_mut() {
                Some(run) if t - last_t <= gap => run.push(point),
                _ => runs.push(vec![point]),
            }
            last_t = t;
        }
        for run in runs {
            if let [(x, y)] = run[..] {
                let _ = write!(
                    out,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{color}\"/>"
                );
                continue;
            }
            let line: String = run
                .iter()
                .enumerate()
                .map(|(i, (x, y))| format!("{}{x:.1} {y:.1}", if i == 0 { "M" } else { "L" }))
                .collect();
            if panel.fill_opacity > 0.0 {
                let (first, last) = (run[0].0, run[run.len() - 1].0);
                let _ = write!(
                    out,
                    "<path d=\"{line}L{last:.1} {base:.1}L{first:.1} {base:.1}Z\" fill=\"{color}\" \
                     fill-opacity=\"{:.2}\" stroke=\"none\"/>",
                    (panel.fill_opacity / 100.0).clamp(0.0, 1.0)
                );
            }
            let _ = write!(
                out,
                "<path d=\"{line}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" \
                 stroke-linejoin=\"round\"/>"
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A state timeline's chart, `width` × `height`: a band per series, its
/// name on the left, coloured by the value's mapping or threshold, equal
/// neighbours merged; the time axis below.
pub fn svg_state_timeline(
    panel: &Panel,
    series: &[Series],
    window: Window,
    width: f64,
    height: f64,
) -> String {
    let widest = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(1);
    let left = (widest as f64 * CHAR_WIDTH + 12.0).min(width * 0.4);
    let (top, bottom_gutter, right) = (4.0, 22.0, 12.0);
    let plot_width = (width - left - right).max(10.0);
    let plot_height = (height - top - bottom_gutter).max(10.0);
    let bottom = top + plot_height;
    let span = (window.end - window.start).max(1.0);
    let x_of =
        |t: f64| left + (t.clamp(window.start, window.end) - window.start) / span * plot_width;
    let step = window.step();
    let opacity = if panel.fill_opacity > 0.0 {
        (panel.fill_opacity / 100.0).clamp(0.0, 1.0)
    } else {
        0.8
    };

    let mut out = svg_open(width, height);
    time_axis(&mut out, window, left, plot_width, top, bottom);
    let row = plot_height / series.len().max(1) as f64;
    let band = row * panel.row_height.clamp(0.1, 1.0);
    for (index, s) in series.iter().enumerate() {
        let y = top + index as f64 * row + (row - band) / 2.0;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"name\">{}</text>",
            left - 8.0,
            y + band / 2.0 + 4.0,
            escape(&s.name)
        );
        // Segments: (from, to, value), equal neighbours merged.
        // Each point holds for one step.
        let mut segments: Vec<(f64, f64, f64)> = Vec::new();
        for &(t, v) in &s.points {
            if !v.is_finite() {
                continue;
            }
            match segments.last_mut() {
                Some(last) if last.2 == v && t <= last.1 + 0.5 * step => last.1 = t + step,
                _ => segments.push((t, t + step, v)),
            }
        }
        for (from, to, value) in segments {
            let x = x_of(from);
            let w = (x_of(to) - x).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{band:.1}\" \
                 fill=\"{}\" fill-opacity=\"{opacity:.2}\" rx=\"2\"/>",
                escape(&panel.value_color(value))
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A stat panel's body, `width` × `height`: each value as a big number (or
/// its mapping's text) in its colour, named when there are several; side
/// by side in a wide panel, stacked in a tall one.
fn stat_html(panel: &Panel, values: &[StatValue], width: f64, height: f64) -> String {
    let count = values.len().max(1) as f64;
    let wide = width >= height;
    let (cell_width, cell_height) = if wide {
        (width / count, height)
    } else {
        (width, height / count)
    };
    let named = values.len() > 1;
    let mut out = format!(
        "<div class=\"stat\" style=\"flex-direction:{}\">",
        if wide { "row" } else { "column" }
    );
    for value in values {
        let text = panel.value_text(value.value);
        let chars = text.chars().count().max(1) as f64;
        let room = if named {
            cell_height - 22.0
        } else {
            cell_height
        };
        let size = (room * 0.55)
            .min((cell_width - 16.0) / (chars * 0.62))
            .clamp(12.0, 72.0);
        out.push_str("<div class=\"cell\">");
        if named {
            let _ = write!(out, "<div class=\"label\">{}</div>", escape(&value.name));
        }
        let _ = write!(
            out,
            "<div class=\"value\" style=\"color:{};font-size:{size:.0}px\">{}</div></div>",
            escape(&panel.value_color(value.value)),
            escape(&text)
        );
    }
    out.push_str("</div>");
    out
}

/// One panel at `rect`, as HTML.
fn panel_html(panel: &Panel, data: &Data, rect: Rect, window: Window) -> String {
    let place = format!(
        "left:{:.1}px;top:{:.1}px;width:{:.1}px;height:{:.1}px",
        rect.left, rect.top, rect.width, rect.height
    );
    if panel.kind == Kind::Row {
        return format!(
            "<div class=\"row\" style=\"{place}\"><h2>{}</h2></div>\n",
            escape(&panel.title)
        );
    }
    let inner_width = rect.width - 16.0;
    let inner_height = rect.height - TITLE_HEIGHT - 8.0;
    let body = match (panel.kind, data) {
        (_, data) if data.shown() == 0 => "<div class=\"empty\">No data</div>".to_string(),
        (Kind::Stat, Data::Values(values)) => stat_html(panel, values, inner_width, inner_height),
        (Kind::TimeSeries, Data::Series(series)) => {
            let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
            let legend = legend_lines(&names, inner_width) as f64 * LEGEND_LINE + 6.0;
            let items: Vec<(String, String)> = series
                .iter()
                .enumerate()
                .map(|(i, s)| (PALETTE[i % PALETTE.len()].to_string(), s.name.clone()))
                .collect();
            format!(
                "{}{}",
                svg_timeseries(panel, series, window, inner_width, inner_height - legend),
                legend_html(&items)
            )
        }
        (Kind::StateTimeline, Data::Series(series)) => {
            let items: Vec<(String, String)> = panel
                .mappings
                .iter()
                .map(|m| {
                    (
                        css_color(m.color.as_deref().unwrap_or_default()),
                        m.text.clone(),
                    )
                })
                .collect();
            let names: Vec<String> = items.iter().map(|(_, n)| n.clone()).collect();
            let legend = if items.is_empty() {
                0.0
            } else {
                legend_lines(&names, inner_width) as f64 * LEGEND_LINE + 6.0
            };
            format!(
                "{}{}",
                svg_state_timeline(panel, series, window, inner_width, inner_height - legend),
                if items.is_empty() {
                    String::new()
                } else {
                    legend_html(&items)
                }
            )
        }
        (kind, data) => panic!(
            "dashboard panel {:?}: a {kind:?} panel with {data:?}",
            panel.title
        ),
    };
    format!(
        "<section class=\"panel\" style=\"{place}\"><h3>{}</h3><div class=\"body\">{body}</div></section>\n",
        escape(&panel.title)
    )
}

const STYLE: &str = "\
*{box-sizing:border-box}\
html,body{margin:0;background:#111217;color:#ccccdc;\
font-family:'Liberation Sans',Inter,Helvetica,Arial,sans-serif;font-size:12px}\
body{position:relative;overflow:hidden}\
header{position:absolute;left:16px;top:12px;right:16px}\
header h1{margin:0;font-size:20px;font-weight:500}\
header p{margin:4px 0 0;color:rgba(204,204,220,0.65);font-size:12px}\
.row{position:absolute;display:flex;align-items:flex-end}\
.row h2{margin:0 0 2px;font-size:16px;font-weight:500}\
.panel{position:absolute;background:#181b1f;border:1px solid rgba(204,204,220,0.12);\
border-radius:2px;overflow:hidden}\
.panel h3{margin:0;height:30px;line-height:30px;padding:0 8px;font-size:14px;font-weight:500;\
white-space:nowrap;overflow:hidden;text-overflow:ellipsis}\
.body{position:absolute;left:8px;right:8px;top:30px;bottom:8px;overflow:hidden}\
svg{display:block}\
svg text{fill:rgba(204,204,220,0.65);font-family:inherit}\
svg text.axis{font-size:11px}\
svg text.name{font-size:12px;fill:#ccccdc}\
.legend{display:flex;flex-wrap:wrap;column-gap:16px;row-gap:2px;padding-top:6px}\
.legend .item{display:inline-flex;align-items:center;height:16px;white-space:nowrap}\
.legend i{display:inline-block;width:14px;height:4px;border-radius:2px;margin-right:6px}\
.stat{display:flex;width:100%;height:100%}\
.cell{flex:1;display:flex;flex-direction:column;align-items:center;justify-content:center;\
min-width:0;min-height:0}\
.cell .label{font-size:13px;color:#ccccdc;white-space:nowrap;overflow:hidden;\
text-overflow:ellipsis;max-width:100%}\
.cell .value{font-weight:500;line-height:1.1;white-space:nowrap}\
.empty{display:flex;height:100%;align-items:center;justify-content:center;\
color:rgba(204,204,220,0.65);font-size:14px}";

/// The page: a header (`title`, `note`), then every panel where its grid
/// position puts it. Self-contained: inline CSS and SVG, no script, no
/// other asset.
pub fn page(title: &str, note: &str, panels: &[(Panel, Data)], window: Window) -> String {
    let height = panels
        .iter()
        .map(|(p, _)| {
            let rect = layout(p.grid);
            rect.top + rect.height
        })
        .fold(HEADER_HEIGHT, f64::max)
        + PAGE_PADDING;
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head>\n\
         <body style=\"width:{PAGE_WIDTH}px;height:{height:.0}px\">\n\
         <header><h1>{}</h1><p>{}</p></header>\n",
        escape(title),
        escape(title),
        escape(note)
    );
    for (panel, data) in panels {
        out.push_str(&panel_html(panel, data, layout(panel.grid), window));
    }
    out.push_str("</body></html>\n");
    out
}

// ---------------------------------------------------------------------------
// From Prometheus.

/// What [`render`] drew of one panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    pub title: String,
    pub kind: Kind,
    /// Series with at least one number, or stat values (0 for a row).
    pub shown: usize,
    /// The queries as Prometheus ran them.
    pub queries: Vec<String>,
}

/// The page [`render`] made, and what it drew of each panel.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub html: String,
    pub panels: Vec<Drawn>,
}

/// Draws `dashboard` from `prometheus` over `window`: every target of every
/// panel evaluated (range queries at [`Window::step`], stats at the
/// window's end), the variables substituted ([`Variables::new`] with the
/// step as `$__interval`, the window as `$__range` and Prometheus's
/// `scrape_interval_secs`), the page made by [`page`] with `note` under the
/// title. Panics on a query Prometheus refuses, or a variable the renderer
/// does not know.
pub async fn render(
    prometheus: &Prometheus,
    dashboard: &Value,
    window: Window,
    scrape_interval_secs: u64,
    note: &str,
) -> Rendered {
    let step = window.step();
    let vars = Variables::new(
        dashboard,
        step as u64,
        window.range_secs(),
        scrape_interval_secs,
    );
    let (start, end, step_text) = (
        format!("{:.3}", window.start),
        format!("{:.3}", window.end),
        format!("{step:.0}"),
    );
    let mut drawn = Vec::new();
    let mut summary = Vec::new();
    for panel in panels(dashboard) {
        let mut queries = Vec::new();
        let data = match panel.kind {
            Kind::Row => Data::Heading,
            Kind::Stat => {
                let mut values = Vec::new();
                for target in &panel.targets {
                    let expr = substitute(&target.expr, &vars)
                        .unwrap_or_else(|err| panic!("dashboard panel {:?}: {err}", panel.title));
                    let data = prometheus
                        .api("query", &[("query", expr.as_str()), ("time", end.as_str())])
                        .await;
                    values.extend(vector_values(&data, &target.legend, &expr));
                    queries.push(expr);
                }
                Data::Values(values)
            }
            Kind::TimeSeries | Kind::StateTimeline => {
                let mut series = Vec::new();
                for target in &panel.targets {
                    let expr = substitute(&target.expr, &vars)
                        .unwrap_or_else(|err| panic!("dashboard panel {:?}: {err}", panel.title));
                    let data = prometheus
                        .api(
                            "query_range",
                            &[
                                ("query", expr.as_str()),
                                ("start", start.as_str()),
                                ("end", end.as_str()),
                                ("step", step_text.as_str()),
                            ],
                        )
                        .await;
                    series.extend(matrix_series(&data, &target.legend, &expr));
                    queries.push(expr);
                }
                Data::Series(series)
            }
        };
        summary.push(Drawn {
            title: panel.title.clone(),
            kind: panel.kind,
            shown: data.shown(),
            queries,
        });
        drawn.push((panel, data));
    }
    let title = dashboard["title"].as_str().unwrap_or("Dashboard");
    Rendered {
        html: page(title, note, &drawn, window),
        panels: summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Variables {
        Variables::new(
            &json!({ "templating": { "list": [
                { "name": "datasource", "type": "datasource", "query": "prometheus" },
                { "name": "mint", "type": "query" },
                { "name": "region", "type": "constant", "query": "eu" }
            ] } }),
            1,
            90,
            GRAFANA_SCRAPE_INTERVAL_SECS,
        )
    }

    #[test]
    fn variables_are_substituted_as_grafana_would() {
        let vars = vars();
        // max(1 s + 15 s, 4 × 15 s)
        assert_eq!(vars.rate_interval_secs(), 60);
        assert_eq!(
            substitute(
                "sum(rate(x{mint=~\"$mint\"}[$__rate_interval])) + increase(y[$__range]) \
                 + z{r=\"${region}\"} + w[${__interval}] / $__range_s",
                &vars
            ),
            Ok(
                "sum(rate(x{mint=~\".*\"}[1m])) + increase(y[90s]) + z{r=\"eu\"} + w[1s] / 90"
                    .to_string()
            )
        );
        assert_eq!(
            substitute("x[${__range:text}]", &vars).as_deref(),
            Ok("x[90s]")
        );
        assert_eq!(
            substitute("no variables", &vars).as_deref(),
            Ok("no variables")
        );
        let unknown = substitute("rate(x[$__rate_interval]) * $tier", &vars);
        assert!(
            unknown.as_ref().is_err_and(|e| e.contains("$tier")),
            "{unknown:?}"
        );
        assert!(substitute("x[${__range]", &vars).is_err());
        assert!(substitute("x $ y", &vars).is_err());
        // A data source scraping every second: max(1 s + 1 s, 4 × 1 s).
        let fast = Variables::new(&json!({}), 1, 90, 1);
        assert_eq!(
            substitute("[$__rate_interval]", &fast).as_deref(),
            Ok("[4s]")
        );
        assert_eq!(prom_duration(3600), "1h");
        assert_eq!(prom_duration(120), "2m");
        assert_eq!(prom_duration(61), "61s");
    }

    #[test]
    fn value_axes_have_round_ticks_covering_the_data() {
        let axis = value_axis(0.0, 0.0667, 4);
        assert_eq!(axis.step, 0.02);
        assert_eq!(axis.ticks, vec![0.0, 0.02, 0.04, 0.06, 0.08]);
        let axis = value_axis(0.0, 0.3, 3);
        assert_eq!(axis.ticks, vec![0.0, 0.1, 0.2, 0.3]);
        let axis = value_axis(0.0, 27.0, 5);
        assert_eq!((axis.min, axis.max, axis.step), (0.0, 30.0, 10.0));
        // A flat line still gets an axis.
        let axis = value_axis(1.0, 1.0, 4);
        assert!(axis.min <= 1.0 && axis.max > axis.min, "{axis:?}");
        let axis = value_axis(0.0, 0.0, 4);
        assert_eq!((axis.min, axis.max), (0.0, 1.0));
        let axis = value_axis(f64::NAN, 3.0, 4);
        assert!(axis.ticks.len() >= 2, "{axis:?}");
    }

    #[test]
    fn time_ticks_are_round_and_inside_the_window() {
        let ticks = time_ticks(1000.5, 1090.0, 6);
        assert_eq!(ticks, vec![1005.0, 1020.0, 1035.0, 1050.0, 1065.0, 1080.0]);
        assert_eq!(
            time_ticks(0.0, 3600.0, 4),
            vec![0.0, 900.0, 1800.0, 2700.0, 3600.0]
        );
        assert_eq!(clock(3661.0), "01:01:01");
        assert_eq!(clock(86_400.0 + 59.0), "00:00:59");
    }

    #[test]
    fn values_are_formatted_by_unit() {
        assert_eq!(format_value(0.0667, "reqps", None), "0.0667 req/s");
        assert_eq!(format_value(0.04, "reqps", Some(0.02)), "0.04 req/s");
        assert_eq!(format_value(0.0, "reqps", Some(0.02)), "0.00 req/s");
        assert_eq!(format_value(27.0, "short", None), "27");
        assert_eq!(format_value(27.634, "short", None), "27.6");
        assert_eq!(format_value(1234.0, "short", None), "1.23 K");
        assert_eq!(format_value(0.25, "percentunit", None), "25%");
        assert_eq!(format_value(0.1, "percentunit", Some(0.05)), "10%");
        assert_eq!(format_value(0.05, "s", Some(0.05)), "50 ms");
        assert_eq!(format_value(1.5, "s", Some(0.5)), "1.5 s");
        assert_eq!(format_value(0.0, "s", None), "0 s");
        assert_eq!(format_value(0.0, "s", Some(0.02)), "0 ms");
        assert_eq!(format_value(2.0, "ops", None), "2 ops/s");
        assert_eq!(format_value(-0.0001, "short", Some(0.5)), "0.0");
        assert_eq!(format_value(f64::NAN, "short", None), "NaN");
    }

    #[test]
    fn legends_take_the_labels_of_the_series() {
        let labels = json!({ "tier": "premium", "mint": "http://m:1", "unit": "sat" });
        let labels = labels.as_object().cloned().unwrap_or_default();
        assert_eq!(
            legend_name("{{tier}} · {{ mint }} ({{unit}}/min)", &labels, "e"),
            "premium · http://m:1 (sat/min)"
        );
        assert_eq!(legend_name("{{missing}}x", &labels, "e"), "x");
        assert_eq!(legend_name("{{open", &labels, "e"), "{{open");
        assert_eq!(legend_name("", &Map::new(), "sum(x)"), "sum(x)");
        let named = json!({ "__name__": "up", "job": "a" });
        assert_eq!(
            legend_name("", named.as_object().unwrap_or(&Map::new()), "up"),
            "up{job=\"a\"}"
        );
    }

    #[test]
    fn text_from_the_json_and_from_prometheus_is_escaped() {
        assert_eq!(
            escape("<b>\"A&B's\"</b>"),
            "&lt;b&gt;&quot;A&amp;B&#39;s&quot;&lt;/b&gt;"
        );
        assert_eq!(css_color("red"), "#F2495C");
        assert_eq!(css_color("#abcdef"), "#abcdef");
        assert_eq!(css_color("red;background:url(x)"), TEXT);

        let window = Window {
            start: 1000.0,
            end: 1060.0,
        };
        let mut panel = Panel::from_json(&json!({
            "type": "timeseries", "title": "<script>alert(1)</script>",
            "gridPos": { "x": 0, "y": 0, "w": 12, "h": 8 },
            "fieldConfig": { "defaults": { "unit": "reqps" } },
            "targets": [{ "expr": "x", "legendFormat": "{{l}}" }]
        }));
        let series = vec![Series {
            name: "</text><script>".to_string(),
            points: (0..60)
                .map(|i| (1000.0 + f64::from(i), f64::from(i % 7)))
                .collect(),
        }];
        let html = page(
            "A & B",
            "note <i>",
            &[(panel.clone(), Data::Series(series.clone()))],
            window,
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;/text&gt;&lt;script&gt;"));
        assert!(html.contains("<title>A &amp; B</title>"));
        assert!(html.contains("note &lt;i&gt;"));
        assert!(html.contains("<path d=\"M"), "the line is drawn");

        panel.kind = Kind::StateTimeline;
        let svg = svg_state_timeline(&panel, &series, window, 600.0, 200.0);
        assert!(svg.contains("&lt;/text&gt;&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn panels_sit_on_grafanas_grid_scaled_to_the_page() {
        let full = layout(GridPos {
            x: 0.0,
            y: 0.0,
            w: 24.0,
            h: 8.0,
        });
        assert_eq!(full.left, PAGE_PADDING);
        assert!((full.left + full.width - (f64::from(PAGE_WIDTH) - PAGE_PADDING)).abs() < 1e-9);
        assert_eq!(full.height, 8.0 * 30.0 + 7.0 * 8.0);
        let left = layout(GridPos {
            x: 0.0,
            y: 1.0,
            w: 12.0,
            h: 8.0,
        });
        let right = layout(GridPos {
            x: 12.0,
            y: 1.0,
            w: 12.0,
            h: 8.0,
        });
        assert!((right.left - (left.left + left.width + MARGIN)).abs() < 1e-9);
        assert_eq!(left.top, HEADER_HEIGHT + 38.0);
        assert_eq!(left.width, right.width);
    }

    #[test]
    fn stats_take_their_mapping_and_threshold_colours() {
        let panel = Panel::from_json(&json!({
            "type": "stat", "title": "Mint readiness",
            "gridPos": { "x": 0, "y": 0, "w": 6, "h": 8 },
            "fieldConfig": { "defaults": {
                "unit": "percentunit",
                "mappings": [{ "type": "value", "options": {
                    "0": { "text": "not ready", "color": "red" } } }],
                "thresholds": { "steps": [
                    { "color": "green", "value": null }, { "color": "orange", "value": 0.1 } ] }
            } },
            "targets": [{ "expr": "x" }]
        }));
        assert_eq!(panel.value_text(0.0), "not ready");
        assert_eq!(panel.value_color(0.0), "#F2495C");
        assert_eq!(panel.value_text(0.05), "5%");
        assert_eq!(panel.value_color(0.05), "#73BF69");
        assert_eq!(panel.value_color(0.5), "#FF9830");
    }

    #[test]
    fn an_unknown_panel_type_is_refused() {
        let result = std::panic::catch_unwind(|| {
            Panel::from_json(&json!({
                "type": "piechart", "title": "Pie",
                "gridPos": { "x": 0, "y": 0, "w": 6, "h": 8 },
                "targets": [{ "expr": "x" }]
            }))
        });
        assert!(result.is_err());
    }

    #[test]
    fn prometheus_answers_become_series_and_values() {
        let matrix = json!({ "resultType": "matrix", "result": [
            { "metric": { "outcome": "paid" }, "values": [[1000, "0.5"], [1001, "NaN"]] }
        ] });
        let series = matrix_series(&matrix, "{{outcome}}", "e");
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].name, "paid");
        assert_eq!(series[0].points[0], (1000.0, 0.5));
        assert!(series[0].points[1].1.is_nan());
        assert_eq!(Data::Series(series).shown(), 1);
        let nan_only = vec![Series {
            name: "p99".to_string(),
            points: vec![(1.0, f64::NAN)],
        }];
        assert_eq!(
            Data::Series(nan_only).shown(),
            0,
            "a line of NaN is no data"
        );
        let vector = json!({ "resultType": "vector", "result": [
            { "metric": { "unit": "sat" }, "value": [1000, "27"] }
        ] });
        assert_eq!(
            vector_values(&vector, "{{unit}}", "e"),
            vec![StatValue {
                name: "sat".to_string(),
                value: 27.0
            }]
        );
        let scalar = json!({ "resultType": "scalar", "result": [1000, "3"] });
        assert_eq!(vector_values(&scalar, "", "e")[0].value, 3.0);
    }
}
