//! The PNG: delivered records/s and p99 latency against subscribers, one row per payload.
//!
//! plotters draws text with `ab_glyph`, which needs a font registered from bytes (no
//! fontconfig). DejaVu Sans (Debian `fonts-dejavu-core`) is read at run time; without it
//! the plot is drawn with no text at all.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::cell::CellResult;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a font for "sans-serif"; false if none was found.
fn register_font() -> bool {
    for path in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// 1.2M, 35k, 4.5: short axis labels.
fn compact(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.0}k", v / 1e3),
        v if v >= 10.0 => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

fn color(system: &str) -> RGBColor {
    match system {
        "relay" => RGBColor(214, 39, 40),
        "redis" => RGBColor(31, 119, 180),
        _ => RGBColor(44, 160, 44),
    }
}

pub fn draw(results: &[CellResult], path: &Path) -> anyhow::Result<()> {
    let text = register_font();
    let ok: Vec<&CellResult> = results.iter().filter(|r| r.error.is_empty()).collect();
    let mut payloads: Vec<usize> = ok.iter().map(|r| r.payload).collect();
    payloads.sort_unstable();
    payloads.dedup();
    let mut systems: Vec<&str> = Vec::new();
    for r in &ok {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    anyhow::ensure!(!payloads.is_empty(), "no results to plot");
    let max_subs = ok.iter().map(|r| r.subscribers).max().unwrap_or(1).max(10) as f64;

    let root = BitMapBackend::new(path, (1200, 360 * payloads.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let rows = root.split_evenly((payloads.len(), 2));
    for (row, &payload) in payloads.iter().enumerate() {
        for (col, area) in rows[row * 2..row * 2 + 2].iter().enumerate() {
            let value = |r: &CellResult| -> f64 {
                if col == 0 {
                    r.sat_records_per_s
                } else {
                    r.p99_us as f64 / 1000.0
                }
            };
            let cells: Vec<&&CellResult> = ok.iter().filter(|r| r.payload == payload).collect();
            let top = cells.iter().map(|r| value(r)).fold(1.0, f64::max) * 2.0;
            let bottom = cells
                .iter()
                .map(|r| value(r))
                .filter(|v| *v > 0.0)
                .fold(top, f64::min)
                / 2.0;
            let mut builder = ChartBuilder::on(area);
            builder.margin(12);
            if text {
                let title = if col == 0 {
                    format!("{payload} B payload: delivered records/s (sum over subscribers)")
                } else {
                    format!("{payload} B payload: p99 latency at half saturation (ms)")
                };
                builder
                    .caption(title, ("sans-serif", 16))
                    .x_label_area_size(36)
                    .y_label_area_size(64);
            }
            let mut chart = builder
                .build_cartesian_2d(
                    (0.8f64..max_subs * 1.25).log_scale(),
                    (bottom.max(1e-3)..top).log_scale(),
                )
                .context("chart")?;
            let mut mesh = chart.configure_mesh();
            if text {
                mesh.x_desc("subscribers")
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_label_formatter(&|y| compact(*y))
                    .y_labels(6);
            } else {
                mesh.disable_x_mesh()
                    .disable_y_mesh()
                    .x_labels(0)
                    .y_labels(0);
            }
            mesh.draw()?;
            for &system in &systems {
                let mut points: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|r| r.system == system && value(r) > 0.0)
                    .map(|r| (r.subscribers as f64, value(r)))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let style = color(system);
                let series =
                    chart.draw_series(LineSeries::new(points.clone(), style.stroke_width(2)))?;
                if text {
                    series.label(system).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], style.stroke_width(2))
                    });
                }
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style.filled())))?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }
        }
    }
    root.present()?;
    Ok(())
}
