//! SPHINX's tasks for a page: the exact upstream prompt of a task (`taskPrompt`), a region as the
//! bracket the model reads (`regionText`), the task ids (`taskIds`), and grounded answers for drawing
//! (`parseAnswer`: boxes and points in the pixels of the original image, the text ranges in UTF-16
//! units for JavaScript, and the table of a chart→table answer). All of it is
//! `sphinx::text::tasks`; this file only converts to and from JSON.

use sphinx::text::tasks::{self, PaddedSquare, Region, Task};
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
    table: Option<&'a [Vec<String>]>,
}

fn utf16_at(s: &str, byte: usize) -> usize {
    s.get(..byte).map_or(0, |p| p.encode_utf16().count())
}

fn json_error(what: &str, e: serde_json::Error) -> JsError {
    JsError::new(&format!("{what}: {e}"))
}

/// The padded square of a `width` x `height` image; 0 x 0 = no image size given.
fn frame(width: u32, height: u32) -> Result<Option<PaddedSquare>, JsError> {
    if width == 0 && height == 0 {
        return Ok(None);
    }
    PaddedSquare::new(width, height).map(Some).map_err(crate::js_error)
}

/// The user message of a task given as JSON (`{"task": "detect", "class": "dogs"}`; a `region` as
/// image pixels `{x1, y1, x2, y2}` of a `width` x `height` image, or as padded-square fractions
/// `[x1, y1, x2, y2]`). Fails naming the task and the missing or bad field.
#[wasm_bindgen(js_name = taskPrompt)]
pub fn task_prompt(task_json: &str, width: u32, height: u32) -> Result<String, JsError> {
    let task: Task = serde_json::from_str(task_json).map_err(|e| json_error("taskPrompt", e))?;
    task.prompt(frame(width, height)?.as_ref()).map_err(crate::js_error)
}

/// A region (JSON, as in `taskPrompt`) as the bracket the model reads: `[0.10, 0.20, 0.50, 0.60]`.
#[wasm_bindgen(js_name = regionText)]
pub fn region_text(region_json: &str, width: u32, height: u32) -> Result<String, JsError> {
    let region: Region = serde_json::from_str(region_json).map_err(|e| json_error("regionText", e))?;
    tasks::region_text(&region, frame(width, height)?.as_ref()).map_err(crate::js_error)
}

/// JSON array of the task ids `taskPrompt` takes.
#[wasm_bindgen(js_name = taskIds)]
pub fn task_ids() -> String {
    serde_json::to_string(&tasks::TASK_IDS).unwrap_or_default()
}

/// JSON `{groundings: [{phrase, shapes: [{kind: "box", x1, y1, x2, y2} | {kind: "point", x, y}],
/// phraseRange, bracketRange}], skeleton: [[[x, y], [x, y]], …], table: [[cell, …], …] | null}` for
/// an answer about a `width` x `height` image.
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
        table: d.table.as_deref(),
    };
    serde_json::to_string(&out).map_err(|e| json_error("parseAnswer", e))
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
        assert_eq!(json["table"], serde_json::Value::Null);
        let json: serde_json::Value = serde_json::from_str(&parse_answer("a | b\n1 | 2", 10, 10).unwrap()).unwrap();
        assert_eq!(json["table"], serde_json::json!([["a", "b"], ["1", "2"]]));
    }

    #[test]
    fn task_prompts_from_json() {
        assert_eq!(task_prompt(r#"{"task":"detect","class":"dogs"}"#, 0, 0).unwrap(), "Detect all dogs shown in the image.");
        // A 400x200 image: y + 100 in the 400-px square.
        let p = task_prompt(r#"{"task":"keypoints","region":{"x1":40,"y1":0,"x2":200,"y2":200}}"#, 400, 200).unwrap();
        assert_eq!(p, "Detect the key points of the person in the region [0.10, 0.25, 0.50, 0.75].");
        assert_eq!(region_text(r#"{"x1":0,"y1":0,"x2":400,"y2":200}"#, 400, 200).unwrap(), "[0.00, 0.25, 1.00, 0.75]");
        let ids: Vec<String> = serde_json::from_str(&task_ids()).unwrap();
        assert_eq!(ids.len(), 10);
    }
}
