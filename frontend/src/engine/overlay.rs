//! Drawing: a frame's pixels and its overlay (boxes, landmarks, labels), sized for how large
//! the canvas is shown.

use visage_shared::Detection;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use super::{Mode, decide};
use crate::track::Label;

/// The canvas's 2D context; pixels are read back often (captured frames), which
/// `willReadFrequently` keeps fast.
pub(super) fn ctx2d(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    let opts = js_sys::Object::new();
    js_sys::Reflect::set(&opts, &"willReadFrequently".into(), &true.into()).ok()?;
    canvas
        .get_context_with_context_options("2d", &opts)
        .ok()??
        .dyn_into()
        .ok()
}

/// Sizes `view` to a `width` x `height` frame and draws the frame's RGBA pixels (when they
/// came back); the context to draw the overlay with.
pub(super) fn draw_frame(
    view: &HtmlCanvasElement,
    width: u32,
    height: u32,
    frame: Option<&JsValue>,
) -> Option<CanvasRenderingContext2d> {
    if view.width() != width || view.height() != height {
        view.set_width(width);
        view.set_height(height);
    }
    let ctx = ctx2d(view)?;
    if let Some(frame) = frame {
        let pixels = js_sys::Uint8ClampedArray::new(frame);
        if let Ok(img) =
            web_sys::ImageData::new_with_js_u8_clamped_array_and_sh(&pixels, width, height)
        {
            let _ = ctx.put_image_data(&img, 0.0, 0.0);
        }
    }
    Some(ctx)
}

/// Canvas pixels per displayed CSS pixel: a large photo shown scaled down needs its lines and
/// labels drawn that much larger to look the same size as on the live view (1 when the canvas
/// is not laid out).
pub(super) fn display_scale(canvas: &HtmlCanvasElement) -> f64 {
    overlay_scale(canvas.width(), canvas.client_width())
}

/// See [`display_scale`]: never below 1 (a small canvas shown enlarged keeps 18 px labels).
fn overlay_scale(canvas_px: u32, shown_px: i32) -> f64 {
    if shown_px <= 0 || canvas_px == 0 {
        return 1.0;
    }
    (canvas_px as f64 / shown_px as f64).max(1.0)
}

/// Draws boxes, landmarks and (live) labels; `scale` is [`display_scale`] of the canvas.
pub(super) fn draw_overlay(
    ctx: &CanvasRenderingContext2d,
    labels: &[(Detection, Label)],
    mode: Mode,
    good_face: Option<bool>,
    scale: f64,
) {
    let px = |v: f64| v * scale;
    ctx.set_line_width(px(3.0));
    ctx.set_font(&format!("bold {:.0}px sans-serif", px(18.0)));
    for (d, label) in labels {
        let color = decide::colour(mode, label, good_face);
        ctx.set_stroke_style_str(color);
        ctx.set_fill_style_str(color);
        let b = d.bbox;
        ctx.stroke_rect(b.x as f64, b.y as f64, b.width as f64, b.height as f64);
        for p in &d.landmarks {
            ctx.fill_rect(p.x as f64 - px(2.0), p.y as f64 - px(2.0), px(4.0), px(4.0));
        }
        if mode == Mode::Live {
            let text = label.text();
            let y = (b.y as f64 - px(8.0)).max(px(18.0));
            ctx.set_fill_style_str("rgba(0,0,0,0.6)");
            let tw = ctx
                .measure_text(&text)
                .map(|m| m.width())
                .unwrap_or(px(80.0));
            ctx.fill_rect(b.x as f64, y - px(18.0), tw + px(8.0), px(24.0));
            ctx.set_fill_style_str(color);
            let _ = ctx.fill_text(&text, b.x as f64 + px(4.0), y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_scale_with_the_displayed_size() {
        // A 4000 px wide photo shown 928 px wide: lines and labels 4.3 times larger.
        assert!((overlay_scale(4000, 928) - 4000.0 / 928.0).abs() < 1e-9);
        // The live view at its own size, a small photo, a canvas not laid out.
        assert_eq!(overlay_scale(640, 640), 1.0);
        assert_eq!(overlay_scale(300, 600), 1.0);
        assert_eq!(overlay_scale(640, 0), 1.0);
    }
}
