//! Tests of the image pipeline against the golden data (`shared/golden/*/reference.safetensors`) and
//! against Pillow / PyTorch values committed in `tests/fixtures/image_fixtures.json` (made by
//! `tests/fixtures/make_image_fixtures.py`; no Python at test time).

use super::resample::bicubic_f32_of_fp16;
use super::*;
use crate::config::LlamaType;
use crate::testing::{check_close, fixtures_dir, golden_dir, read_safetensor, reference_json, tolerance, Tolerance};
use serde_json::Value;
use std::sync::OnceLock;

fn fixtures() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let p = fixtures_dir().join("image_fixtures.json");
        let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

fn cases(name: &str) -> &'static Vec<Value> {
    fixtures()[name].as_array().unwrap_or_else(|| panic!("image_fixtures.json has no {name}"))
}

fn us(v: &Value, k: &str) -> usize {
    v[k].as_u64().unwrap_or_else(|| panic!("fixture field {k}")) as usize
}

fn bytes(v: &Value, k: &str) -> Vec<u8> {
    v[k].as_array().unwrap_or_else(|| panic!("fixture field {k}")).iter().map(|x| x.as_u64().unwrap() as u8).collect()
}

/// JSON numbers are the f64 values of f32s (or short decimals numpy rounded to f32 the same way).
fn floats(v: &Value, k: &str) -> Vec<f32> {
    v[k].as_array().unwrap_or_else(|| panic!("fixture field {k}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut n) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = T.iter().position(|&t| t == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
            acc &= (1 << n) - 1;
        }
    }
    out
}

/// Elements whose bits differ.
fn count_diff(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count()
}

/// Largest distance in fp16 ulps between two fp16-valued slices.
fn max_fp16_ulps(a: &[f32], b: &[f32]) -> i32 {
    let key = |v: f32| {
        let h = half::f16::from_f32(v).to_bits() as i32;
        if h & 0x8000 != 0 {
            -(h & 0x7fff)
        } else {
            h
        }
    };
    a.iter().zip(b).map(|(&x, &y)| (key(x) - key(y)).abs()).max().unwrap_or(0)
}

// ---- golden data ---------------------------------------------------------------------------

fn golden_padded(folder: &str, case: &str, size: usize) -> (ImageTensor, Vec<f32>) {
    let g = golden_dir(folder);
    let png = std::fs::read(g.join(format!("image_{case}.png"))).expect("golden PNG");
    let img = decode(&png).expect("decode golden PNG");
    let got = padded_resize(&img, size).expect("padded_resize");
    let want = read_safetensor(&g.join("reference.safetensors"), &format!("{case}.padded_resize")).expect("reference");
    assert_eq!(want.shape, vec![3, size, size], "{folder} {case}.padded_resize shape");
    (got, want.data)
}

#[test]
fn padded_resize_matches_golden_exactly() {
    for (folder, size) in [("sphinx-tiny-1k-dev", 1024), ("sphinx-1k-dev", 448)] {
        let reference = reference_json(&golden_dir(folder));
        for case in ["wide", "tall"] {
            let name = format!("{case}.padded_resize");
            let tol = tolerance(&reference, &name);
            assert_eq!(tol.abs, 0.0, "{name} is meant to be exact");
            let (got, want) = golden_padded(folder, case, size);
            let msg = check_close(&name, got.data(), &want, tol).unwrap_or_else(|e| panic!("{folder}: {e}"));
            let differ = count_diff(got.data(), &want);
            eprintln!("{folder}: {msg}; bit-different elements: {differ}");
            assert_eq!(differ, 0, "{folder} {name}");
        }
    }
}

#[test]
fn global_224_view_matches_golden() {
    // Tiny-1k: bicubic 1024->224 of padded_resize (DINOv2 tile 0 before re-normalisation).
    // 1k: the 448->224 global sub-image (exact 2x).
    for (folder, layout) in [("sphinx-tiny-1k-dev", LlamaType::Ens5Light), ("sphinx-1k-dev", LlamaType::Ens5)] {
        let g = golden_dir(folder);
        let reference = reference_json(&g);
        let name = "wide.view_global_224";
        let tol = tolerance(&reference, name);
        let (padded, _) = golden_padded(folder, "wide", layout.image_size());
        let got = bicubic_fp16(&padded, 224, 224).unwrap();
        let want = read_safetensor(&g.join("reference.safetensors"), name).unwrap();
        assert_eq!(want.shape, vec![3, 224, 224]);
        let msg = check_close(name, got.data(), &want.data, tol).unwrap_or_else(|e| panic!("{folder}: {e}"));
        let differ = count_diff(got.data(), &want.data);
        // Near zero an fp16 ulp is tiny, so the ulp count can exceed 1 there while |Δ| stays far
        // below the tolerance (one ulp at 2..4): report it, judge by `check_close` above.
        let ulps = max_fp16_ulps(got.data(), &want.data);
        eprintln!("{folder}: {msg}; {differ} of {} elements differ (at most {ulps} fp16 ulps)", got.data().len());

        // The same tensor is what views_for puts into tile 0.
        let views = views_for(layout, &padded).unwrap();
        match layout {
            LlamaType::Ens5 => assert_eq!(views.clip[0], got),
            _ => assert_eq!(views.dinov2[0], renormalize_for_dinov2(&got, Renorm::ScaleShift).unwrap()),
        }
    }
}

// ---- Pillow ----------------------------------------------------------------------------------

#[test]
fn pil_resize_matches_pillow() {
    for c in cases("pil_resize") {
        let (w, h, ow, oh) = (us(c, "in_w"), us(c, "in_h"), us(c, "out_w"), us(c, "out_h"));
        let src = Rgb8::new(w, h, bytes(c, "input")).unwrap();
        let got = pil_resize_bicubic(&src, ow, oh).unwrap();
        assert_eq!(got.data(), &bytes(c, "output")[..], "Pillow resize {w}x{h} -> {ow}x{oh}");
    }
}

#[test]
fn padded_resize_matches_upstream_transform() {
    for c in cases("padded_resize") {
        let (w, h, size) = (us(c, "w"), us(c, "h"), us(c, "size"));
        let img = Rgb8::new(w, h, bytes(c, "input")).unwrap();
        let got = padded_resize(&img, size).unwrap();
        assert_eq!(got.shape(), [3, size, size]);
        assert_eq!(count_diff(got.data(), &floats(c, "output")), 0, "padded_resize {w}x{h} -> {size}");
    }
}

#[test]
fn pad_colour_and_offsets() {
    assert_eq!(transform::pad_colour(), [122, 116, 104]);
    // Wide 3x1: pasted at y = (3-1)//2 = 1. Tall 1x4: pasted at x = (4-1)//2 = 1.
    let wide = pad_to_square(&Rgb8::new(3, 1, vec![1; 9]).unwrap()).unwrap();
    let row = |im: &Rgb8, y: usize| im.data()[y * im.width() * 3..(y + 1) * im.width() * 3].to_vec();
    assert_eq!(row(&wide, 0), [122, 116, 104].repeat(3));
    assert_eq!(row(&wide, 1), vec![1; 9]);
    let tall = pad_to_square(&Rgb8::new(1, 4, vec![7; 12]).unwrap()).unwrap();
    assert_eq!(row(&tall, 2), [vec![122, 116, 104], vec![7, 7, 7], vec![122, 116, 104, 122, 116, 104]].concat());
}

// ---- PyTorch ---------------------------------------------------------------------------------

#[test]
fn torch_bicubic_matches_pytorch() {
    for c in cases("torch_bicubic") {
        let (h, w, oh, ow) = (us(c, "in_h"), us(c, "in_w"), us(c, "out_h"), us(c, "out_w"));
        let x = ImageTensor::new(h, w, floats(c, "input")).unwrap();
        let f32_out = bicubic_f32_of_fp16(&x, oh, ow).unwrap();
        // Exact: an independent numpy float32 evaluation of the same formula (no FMA).
        assert_eq!(count_diff(f32_out.data(), &floats(c, "plain_f32")), 0, "plain f32 {h}x{w} -> {oh}x{ow}");
        // PyTorch's float32 CPU kernel fuses some multiply-adds; allow twice its own deviation from
        // float64 on this case (plus 1e-6 where that deviation is ~0).
        let dev = c["torch_f32_vs_f64_max_abs"].as_f64().unwrap();
        let tol = Tolerance { abs: 2.0 * dev + 1e-6, mismatch_fraction_max: 0.0 };
        let msg = check_close("bicubic f32", f32_out.data(), &floats(c, "torch_f32"), tol).unwrap_or_else(|e| panic!("{e}"));
        // After the fp16 rounding: at most 1 ulp from torch, in at most 2% of the elements.
        let got = bicubic_fp16(&x, oh, ow).unwrap();
        let want = floats(c, "torch_fp16");
        let differ = count_diff(got.data(), &want);
        eprintln!("{h}x{w} -> {oh}x{ow}: {msg}; fp16: {differ} of {} differ", want.len());
        assert!(max_fp16_ulps(got.data(), &want) <= 1);
        assert!(differ as f64 <= 0.02 * want.len() as f64);
    }
}

#[test]
fn torch_nearest_matches_pytorch() {
    for c in cases("torch_nearest") {
        let (h, w, oh, ow) = (us(c, "in_h"), us(c, "in_w"), us(c, "out_h"), us(c, "out_w"));
        let x = ImageTensor::new(h, w, floats(c, "input")).unwrap();
        let got = nearest_fp16(&x, oh, ow).unwrap();
        assert_eq!(count_diff(got.data(), &floats(c, "output")), 0, "nearest {h}x{w} -> {oh}x{ow}");
    }
}

#[test]
fn dinov2_renormalisation_matches_torch() {
    let c = &fixtures()["renorm"];
    let x = ImageTensor::new(us(c, "h"), us(c, "w"), floats(c, "input")).unwrap();
    let a = renormalize_for_dinov2(&x, Renorm::ScaleShift).unwrap();
    assert_eq!(count_diff(a.data(), &floats(c, "scale_shift")), 0);
    let b = renormalize_for_dinov2(&x, Renorm::Unnormalize).unwrap();
    assert_eq!(count_diff(b.data(), &floats(c, "unnormalize")), 0);
}

// ---- views -----------------------------------------------------------------------------------

/// A deterministic normalised-looking image of side `s`.
fn synthetic(s: usize) -> ImageTensor {
    let data = (0..3 * s * s).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 3.7).collect();
    ImageTensor::new(s, s, data).unwrap()
}

#[test]
fn views_have_upstream_shapes_and_sources() {
    for layout in [LlamaType::Ens5Light, LlamaType::EnsLight, LlamaType::Ens, LlamaType::Ens5] {
        let s = layout.image_size();
        let im = synthetic(s);
        let v = views_for(layout, &im).unwrap();
        let n = layout.views();
        assert_eq!(v.convnext.len(), n);
        assert_eq!(v.dinov2.len(), n);
        assert_eq!(v.clip.len(), if layout.has_clip_qformer() { n } else { 0 });
        let cs = layout.convnext_size();
        assert!(v.convnext.iter().all(|t| t.shape() == [3, cs, cs]), "{layout:?} convnext");
        assert!(v.dinov2.iter().all(|t| t.shape() == [3, 224, 224]), "{layout:?} dinov2");
        assert!(v.clip.iter().all(|t| t.shape() == [3, 224, 224]), "{layout:?} clip");
        assert_eq!(LlamaType::parse(layout.name()).unwrap(), layout);
        match layout {
            LlamaType::Ens5Light => {
                assert_eq!(v.convnext[0], bicubic_fp16(&im, 512, 512).unwrap());
                let q = quadrants(&im).unwrap();
                assert_eq!(&v.convnext[1..], &q[..], "exact crops, no fp16 rounding");
                let q448 = quadrants(&bicubic_fp16(&im, 448, 448).unwrap()).unwrap();
                assert_eq!(v.dinov2[4], renormalize_for_dinov2(&q448[3], Renorm::ScaleShift).unwrap());
            }
            LlamaType::EnsLight => {
                let want: Vec<f32> = im.data().iter().map(|&x| round_fp16(x)).collect();
                assert_eq!(v.convnext[0].data(), &want[..], "nearest 512->512 is an fp16 round trip");
            }
            LlamaType::Ens => {
                assert_eq!(v.clip[0], im);
                assert_eq!(v.convnext[0], nearest_fp16(&im, 256, 256).unwrap());
                assert_eq!(v.dinov2[0], renormalize_for_dinov2(&im, Renorm::Unnormalize).unwrap());
            }
            LlamaType::Ens5 => {
                assert_eq!(v.clip[0], bicubic_fp16(&im, 224, 224).unwrap());
                assert_eq!(v.clip[2], crop(&im, 0, 224, 224, 224).unwrap());
                assert_eq!(v.convnext[3], nearest_fp16(&v.clip[3], 256, 256).unwrap());
            }
        }
    }
    assert!(views_for(LlamaType::Ens5, &synthetic(224)).is_err(), "wrong input size is refused");
    assert!(LlamaType::parse("llama").is_err());
    let (shape, data) = stack(&views_for(LlamaType::Ens5, &synthetic(448)).unwrap().clip).unwrap();
    assert_eq!(shape, vec![5, 3, 224, 224]);
    assert_eq!(data.len(), 5 * 3 * 224 * 224);
}

// ---- decoding --------------------------------------------------------------------------------

#[test]
fn png_decoding_matches_pillow_convert_rgb() {
    for c in cases("png") {
        let name = c["name"].as_str().unwrap();
        let img = decode(&b64(c["data"].as_str().unwrap())).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (us(c, "width"), us(c, "height")), "{name}");
        assert_eq!(img.data(), &bytes(c, "rgb")[..], "{name} (Pillow mode {})", c["pil_mode"]);
    }
}

#[test]
fn jpeg_decoding_is_close_to_pillow() {
    // Different decoders (zune-jpeg vs libjpeg-turbo): report the differences, bound them loosely.
    for c in cases("jpeg") {
        let name = c["name"].as_str().unwrap();
        let img = decode(&b64(c["data"].as_str().unwrap())).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (us(c, "width"), us(c, "height")), "{name}");
        let want = bytes(c, "rgb");
        let diffs: Vec<i32> = img.data().iter().zip(&want).map(|(&a, &b)| (a as i32 - b as i32).abs()).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let n = diffs.iter().filter(|&&d| d != 0).count();
        eprintln!("jpeg {name}: {n} of {} bytes differ from Pillow, max |Δ| {max}", want.len());
        assert!(max <= 4, "jpeg {name}: max |Δ| {max} (observed 2 when written)");
    }
}

#[test]
fn canvas_rgba_drops_alpha_like_pillow() {
    let c = &fixtures()["canvas"];
    let img = from_rgba(&bytes(c, "rgba"), us(c, "width"), us(c, "height")).unwrap();
    assert_eq!(img.data(), &bytes(c, "rgb")[..]);
}

#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    let e = decode(b"not an image at all").unwrap_err().to_string();
    assert!(e.contains("format"), "{e}");
    let png = b64(cases("png")[0]["data"].as_str().unwrap());
    assert!(decode(&png[..png.len() / 2]).is_err(), "truncated PNG");
    let e = decode(&b64(fixtures()["png_too_wide"].as_str().unwrap())).unwrap_err().to_string();
    assert!(e.contains("MAX_IMAGE_SIDE"), "{e}");
    assert!(from_rgba(&[], 0, 0).unwrap_err().to_string().contains("zero size"));
    assert!(from_rgba(&[0; 8], 1, 1).is_err(), "wrong RGBA length");
    let e = from_rgba(&[], MAX_IMAGE_SIDE + 1, 1).unwrap_err().to_string();
    assert!(e.contains("16384"), "{e}");
    assert!(Rgb8::new(2, 2, vec![0; 11]).is_err());
    assert!(padded_resize(&Rgb8::new(1, 1, vec![0; 3]).unwrap(), 0).is_err());
    assert!(bicubic_fp16(&synthetic(4), 0, 3).is_err());
}

#[test]
fn images_past_the_pixel_limit_are_refused_with_its_name() {
    let e = from_rgba(&[], 8193, 8193).unwrap_err().to_string();
    assert!(e.contains("image too large (8193×8193)") && e.contains("MAX_IMAGE_PIXELS"), "{e}");
}

#[test]
fn large_inputs_are_fast_enough() {
    // Not a benchmark: catches accidental quadratic work. Debug builds are ~20x slower than release.
    let img = Rgb8::new(1500, 900, (0..1500 * 900 * 3).map(|i| (i * 31 % 251) as u8).collect()).unwrap();
    let t = std::time::Instant::now();
    let padded = padded_resize(&img, 1024).unwrap();
    let t_resize = t.elapsed();
    let t = std::time::Instant::now();
    let v = views_for(LlamaType::Ens5Light, &padded).unwrap();
    eprintln!("1500x900 -> padded_resize(1024): {t_resize:?}; Ens5Light views: {:?}", t.elapsed());
    assert_eq!(v.dinov2.len(), 5);
}
