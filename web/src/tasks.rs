//! Grounded answers for drawing: `sphinx::text::tasks::drawing` (boxes and points of an answer, in
//! the pixels of the original image) as JSON, with the text ranges in UTF-16 units for JavaScript.

use sphinx::text::tasks;
use wasm_bindgen::prelude::*;

#[derive(serde::Serialize)]
struct JsGrounding<'a> {
    phrase: Option<&'a str>,
    shapes: &'a [tasks::Shape],
    /// `<p>…</p>` as [start, end) in UTF-16 code units of the answer.
    #[serde(rename = "phraseRange")]
    phrase_range: Option<(usize, usize)>,
    /// `[…]` as [start, end) in UTF-16 code units.
    #[serde(rename = "bracketRange")]
    bracket_range: (usize, usize),
}

#[derive(serde::Serialize)]
struct JsDrawing<'a> {
    groundings: Vec<JsGrounding<'a>>,
    skeleton: &'a [[[f64; 2]; 2]],
}

fn utf16_at(s: &str, byte: usize) -> usize {
    s.get(..byte).map_or(0, |p| p.encode_utf16().count())
}

/// JSON `{groundings: [{phrase, shapes: [{kind: "box", x1, y1, x2, y2} | {kind: "point", x, y}],
/// phraseRange, bracketRange}], skeleton: [[[x, y], [x, y]], …]}` for an answer about a
/// `width` x `height` image.
#[wasm_bindgen(js_name = parseAnswer)]
pub fn parse_answer(answer: &str, width: u32, height: u32) -> Result<String, JsError> {
    let d = tasks::drawing(answer, width, height).map_err(crate::js_error)?;
    let out = JsDrawing {
        groundings: d
            .groundings
            .iter()
            .map(|g| JsGrounding {
                phrase: g.phrase.as_deref(),
                shapes: &g.shapes,
                phrase_range: g.phrase_range.map(|(a, b)| (utf16_at(answer, a), utf16_at(answer, b))),
                bracket_range: (utf16_at(answer, g.bracket_range.0), utf16_at(answer, g.bracket_range.1)),
            })
            .collect(),
        skeleton: &d.skeleton,
    };
    serde_json::to_string(&out).map_err(|e| JsError::new(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_in_pixels_and_ranges_in_utf16_units() {
        // "é" is 2 bytes in UTF-8 and 1 unit in UTF-16: ranges after it shift by one.
        let answer = "é <p>a dog</p> [0.00, 0.25, 0.50, 0.75]";
        let json: serde_json::Value = serde_json::from_str(&parse_answer(answer, 200, 100).unwrap()).unwrap();
        let g = &json["groundings"][0];
        assert_eq!(g["phrase"], "a dog");
        assert_eq!(g["phraseRange"], serde_json::json!([2, 14]));
        assert_eq!(g["bracketRange"].as_array().unwrap()[0], 15);
        let b = &g["shapes"][0];
        assert_eq!(b["kind"], "box");
        // the 200x100 image sits in a 200x200 square, 50 px down
        assert_eq!((b["x1"].as_f64(), b["y1"].as_f64(), b["x2"].as_f64(), b["y2"].as_f64()), (Some(0.0), Some(0.0), Some(100.0), Some(100.0)));
    }
}
