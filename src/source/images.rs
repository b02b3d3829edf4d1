//! Image-file sources: a directory of JPEG/PNG files (in name order), a list of image files, or
//! one file (the `Folder` source), and the decoding of one JPEG or PNG into an RGB8 [`Frame`]
//! (any 8 or 16 bit grey / grey+alpha / RGB / RGBA layout, alpha dropped).

use std::fs::{self, File};
use std::io::{Cursor, Read};
use std::path::PathBuf;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder, Limits};

use super::{
    has_extension, FaultChecks, Frame, FrameSource, InputConfig, SourceError, IMAGE_EXTENSIONS,
};

pub(super) struct Folder {
    spec: String,
    /// (path, file name), sorted by file name for a directory, as given for a list.
    files: Vec<(PathBuf, String)>,
    pos: usize,
    next_index: u64,
    fps: f64,
    /// Raw file bytes, reused.
    file_buf: Vec<u8>,
    /// Decoder output when it is not RGB8, reused.
    scratch: Vec<u8>,
    /// The size bounds of [`InputConfig`].
    bounds: Bounds,
    checks: FaultChecks,
}

/// Sizes an image must fit: [`InputConfig::max_pixels`], `min_width`, `min_height`.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_pixels: u64,
    min_width: u32,
    min_height: u32,
}

impl Folder {
    /// The image files of a directory, in name order.
    pub(super) fn open(spec: &str, options: &InputConfig) -> Result<Folder, SourceError> {
        let open_err = |source| SourceError::Open {
            spec: spec.to_string(),
            source,
        };
        let mut paths = Vec::new();
        for entry in fs::read_dir(spec).map_err(open_err)? {
            let path = entry.map_err(open_err)?.path();
            if !has_extension(&path, IMAGE_EXTENSIONS) || !path.is_file() {
                continue;
            }
            paths.push(path);
        }
        if paths.is_empty() {
            return Err(SourceError::Unsupported {
                spec: spec.to_string(),
                reason: "directory holds no .jpg/.jpeg/.png files".to_string(),
            });
        }
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Folder::from_files(spec, paths, options)
    }

    /// The given image files, in the order given. Each must exist and be a file.
    pub(super) fn from_files(
        spec: &str,
        paths: impl IntoIterator<Item = PathBuf>,
        options: &InputConfig,
    ) -> Result<Folder, SourceError> {
        let mut files = Vec::new();
        for path in paths {
            let meta = fs::metadata(&path).map_err(|source| SourceError::Open {
                spec: path.display().to_string(),
                source,
            })?;
            if !meta.is_file() || !has_extension(&path, IMAGE_EXTENSIONS) {
                return Err(SourceError::Unsupported {
                    spec: path.display().to_string(),
                    reason: "not a .jpg/.jpeg/.png file".to_string(),
                });
            }
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            files.push((path, name));
        }
        if files.is_empty() {
            return Err(SourceError::Unsupported {
                spec: spec.to_string(),
                reason: "no image files given".to_string(),
            });
        }
        Ok(Folder {
            spec: spec.to_string(),
            files,
            pos: 0,
            next_index: 0,
            fps: options.fps,
            file_buf: Vec::new(),
            scratch: Vec::new(),
            bounds: Bounds {
                max_pixels: options.max_pixels,
                min_width: options.min_width,
                min_height: options.min_height,
            },
            checks: options.fault_checks(),
        })
    }
}

impl FrameSource for Folder {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        let (path, name) = self.files.get(self.pos)?;
        self.pos += 1;
        let index = self.next_index;
        self.next_index += 1;
        frame.begin(index, self.fps);
        frame.name.push_str(name);

        self.file_buf.clear();
        let read = File::open(path).and_then(|mut f| f.read_to_end(&mut self.file_buf));
        if let Err(source) = read {
            return Some(Err(SourceError::ImageIo {
                path: path.clone(),
                index,
                source,
            }));
        }
        let decoded = decode_image(&self.file_buf, frame, &mut self.scratch, self.bounds);
        Some(decoded.map_err(|message| {
            frame.width = 0;
            frame.height = 0;
            frame.rgb.clear();
            SourceError::ImageDecode {
                path: path.clone(),
                index,
                message,
            }
        }))
    }

    fn describe(&self) -> String {
        let what = if self.files.len() == 1 {
            "image"
        } else {
            "images"
        };
        format!("folder {} ({} {what})", self.spec, self.files.len())
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.files.len())
    }

    /// The size the first readable image's header states (headers only, nothing decoded).
    fn frame_size(&self) -> Option<(u32, u32)> {
        self.files[self.pos.min(self.files.len())..]
            .iter()
            .take(8)
            .find_map(|(path, _)| image::image_dimensions(path).ok())
    }

    fn fault_checks(&self) -> FaultChecks {
        self.checks
    }
}

/// Decodes a JPEG or PNG (by magic bytes) into `frame` as RGB8, refusing a picture outside
/// `bounds` before allocating it.
fn decode_image(
    bytes: &[u8],
    frame: &mut Frame,
    scratch: &mut Vec<u8>,
    bounds: Bounds,
) -> Result<(), String> {
    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let is_png = bytes.starts_with(PNG_MAGIC);
    if !is_png && !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(format!(
            "not a JPEG or PNG (starts with {})",
            show_start(bytes)
        ));
    }
    let cursor = Cursor::new(bytes);
    if is_png {
        if let Some((w, h)) = png_header_size(bytes) {
            check_size(w, h, bounds).map_err(|e| format!("PNG: {e}"))?;
        }
        let dec = PngDecoder::new(cursor).map_err(|e| format!("PNG: {e}"))?;
        decode_with(dec, frame, scratch, bounds).map_err(|e| format!("PNG: {e}"))
    } else {
        // The JPEG decoder fills a cut-off file with grey and reports success; a frame that lost
        // its tail (camera dropped out mid-write) must be refused, so look for end-of-image.
        if !ends_with_jpeg_eoi(bytes) {
            return Err("JPEG: truncated (no end-of-image marker)".into());
        }
        let dec = JpegDecoder::new(cursor).map_err(|e| format!("JPEG: {e}"))?;
        decode_with(dec, frame, scratch, bounds).map_err(|e| format!("JPEG: {e}"))
    }
}

/// The first bytes of a file for an error message: printable ASCII as text, else hex.
fn show_start(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        head.iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The decoder limits for pictures of at most `max_pixels` pixels: neither side longer than
/// that, and no allocation beyond what such a picture takes at 16 bit RGBA (8 bytes a pixel).
fn limits_for(max_pixels: u64) -> Limits {
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let mut limits = Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(1 << 20));
    limits
}

/// The input section's bounds on a picture of `w` x `h`, with the key a picture breaks.
fn check_size(w: u32, h: u32, bounds: Bounds) -> Result<(), String> {
    let max_pixels = bounds.max_pixels;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(format!(
            "image is {w}x{h} = {pixels} pixels, over input.max_pixels = {max_pixels}"
        ));
    }
    if w < bounds.min_width {
        return Err(format!(
            "image is {w}x{h}, narrower than input.min_width = {}",
            bounds.min_width
        ));
    }
    if h < bounds.min_height {
        return Err(format!(
            "image is {w}x{h}, lower than input.min_height = {}",
            bounds.min_height
        ));
    }
    Ok(())
}

/// A PNG's width and height from its header (the IHDR chunk, first after the signature), read
/// before the decoder is made: on a 32-bit target the png crate refuses a huge picture itself
/// ("Memory limit exceeded") before [`check_size`] could name the key it breaks.
fn png_header_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(12..24)?;
    if &ihdr[..4] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&ihdr[4..8]), be(&ihdr[8..12])))
}

/// True when the JPEG's last marker is EOI (FF D9), allowing trailing padding some encoders add.
fn ends_with_jpeg_eoi(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn decode_with<D: ImageDecoder>(
    mut dec: D,
    frame: &mut Frame,
    scratch: &mut Vec<u8>,
    bounds: Bounds,
) -> Result<(), String> {
    let max_pixels = bounds.max_pixels;
    let (w, h) = dec.dimensions();
    check_size(w, h, bounds)?;
    dec.set_limits(limits_for(max_pixels))
        .map_err(|e| format!("{e} (input.max_pixels = {max_pixels})"))?;
    let colour = dec.color_type();
    let total = usize::try_from(dec.total_bytes()).map_err(|e| e.to_string())?;
    let npix = w as usize * h as usize;
    let (channels, wide) = match colour {
        ColorType::Rgb8 => {
            frame.rgb.resize(total, 0);
            dec.read_image(&mut frame.rgb).map_err(|e| e.to_string())?;
            frame.width = w;
            frame.height = h;
            return Ok(());
        }
        ColorType::L8 => (1, false),
        ColorType::La8 => (2, false),
        ColorType::Rgba8 => (4, false),
        ColorType::L16 => (1, true),
        ColorType::La16 => (2, true),
        ColorType::Rgb16 => (3, true),
        ColorType::Rgba16 => (4, true),
        other => return Err(format!("unsupported pixel format {other:?}")),
    };
    scratch.resize(total, 0);
    dec.read_image(scratch).map_err(|e| e.to_string())?;
    frame.rgb.resize(npix * 3, 0);
    to_rgb8(scratch, channels, wide, &mut frame.rgb);
    frame.width = w;
    frame.height = h;
    Ok(())
}

/// Converts grey / grey+alpha / RGB / RGBA samples, 8 or 16 bit (native endian), to RGB8.
/// Alpha is dropped.
fn to_rgb8(src: &[u8], channels: usize, wide: bool, dst: &mut [u8]) {
    if wide {
        let stride = channels * 2;
        let s16 = |px: &[u8], c: usize| {
            let v = u32::from(u16::from_ne_bytes([px[2 * c], px[2 * c + 1]]));
            ((v * 255 + 32767) / 65535) as u8
        };
        for (px, out) in src.chunks_exact(stride).zip(dst.chunks_exact_mut(3)) {
            if channels < 3 {
                out.fill(s16(px, 0));
            } else {
                out[0] = s16(px, 0);
                out[1] = s16(px, 1);
                out[2] = s16(px, 2);
            }
        }
    } else if channels < 3 {
        for (px, out) in src.chunks_exact(channels).zip(dst.chunks_exact_mut(3)) {
            out.fill(px[0]);
        }
    } else {
        for (px, out) in src.chunks_exact(channels).zip(dst.chunks_exact_mut(3)) {
            out.copy_from_slice(&px[..3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::open;
    use crate::source::tests::{png, TempDir};
    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, ImageEncoder};

    /// The default input settings, but accepting images of any size (the fixtures are tiny).
    fn tiny_ok() -> InputConfig {
        InputConfig {
            min_width: 1,
            min_height: 1,
            ..InputConfig::default()
        }
    }

    #[test]
    fn folder_order_corrupt_and_formats() {
        let dir = TempDir::new("folder");
        let d = &dir.0;
        // RGB8 PNG
        fs::write(
            d.join("a.PNG"),
            png(2, 1, &[1, 2, 3, 4, 5, 6], ExtendedColorType::Rgb8),
        )
        .unwrap();
        // Grey PNG
        fs::write(
            d.join("b.png"),
            png(2, 1, &[10, 200], ExtendedColorType::L8),
        )
        .unwrap();
        // Corrupt JPEG: valid start, then garbage
        fs::write(d.join("c.jpg"), b"\xFF\xD8\xFF\xE0garbage").unwrap();
        // RGBA PNG
        fs::write(
            d.join("d.png"),
            png(1, 1, &[9, 8, 7, 0], ExtendedColorType::Rgba8),
        )
        .unwrap();
        // 16-bit RGB PNG (encoder takes native-endian u16 bytes)
        let px16: Vec<u8> = [0xFFFFu16, 0x0000, 0x8080]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        fs::write(d.join("e.png"), png(1, 1, &px16, ExtendedColorType::Rgb16)).unwrap();
        // Truncated PNG
        let mut cut = png(4, 4, &[77; 48], ExtendedColorType::Rgb8);
        cut.truncate(cut.len() / 2);
        fs::write(d.join("f.png"), cut).unwrap();
        // Solid-colour JPEG
        let mut jpg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpg, 95)
            .write_image(&[200; 8 * 8 * 3], 8, 8, ExtendedColorType::Rgb8)
            .unwrap();
        fs::write(d.join("g.JPEG"), jpg).unwrap();
        // Ignored files
        fs::write(d.join("notes.txt"), b"x").unwrap();
        fs::create_dir(d.join("sub.jpg")).unwrap();

        let spec = d.to_str().unwrap();
        let mut src = crate::source::open_with(spec, &tiny_ok()).unwrap();
        assert_eq!(src.len_hint(), Some(7));
        assert_eq!(src.describe(), format!("folder {spec} (7 images)"));
        let mut f = Frame::new();

        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(
            (f.index, f.name.as_str(), f.width, f.height),
            (0, "a.PNG", 2, 1)
        );
        assert_eq!(f.rgb, [1, 2, 3, 4, 5, 6]);

        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.index, f.name.as_str()), (1, "b.png"));
        assert_eq!(f.rgb, [10, 10, 10, 200, 200, 200]);

        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(!e.is_fatal());
        assert_eq!((f.index, f.name.as_str()), (2, "c.jpg"));
        let msg = e.to_string();
        assert!(msg.contains("c.jpg") && msg.contains("JPEG"), "{msg}");

        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), f.rgb.as_slice()),
            ("d.png", &[9u8, 8, 7][..])
        );

        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), f.rgb.as_slice()),
            ("e.png", &[255u8, 0, 128][..])
        );

        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(!e.is_fatal());
        assert!(e.to_string().contains("f.png"), "{e}");

        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(
            (f.index, f.name.as_str(), f.width, f.height),
            (6, "g.JPEG", 8, 8)
        );
        assert!(f.rgb.iter().all(|&c| c.abs_diff(200) <= 2), "{:?}", f.rgb);

        assert!(src.next_frame(&mut f).is_none());
        assert!(src.next_frame(&mut f).is_none());
    }

    /// A PNG signature and IHDR chunk claiming `w` x `h` RGB8, then an empty IDAT and IEND.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut c = 0xFFFF_FFFFu32;
            for &b in data {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &[]);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn oversized_empty_and_foreign_files_are_skipped_with_a_reason() {
        let dir = TempDir::new("faults");
        let d = &dir.0;
        fs::write(d.join("a.png"), png_header_only(30000, 30000)).unwrap();
        fs::write(
            d.join("b.png"),
            png(2, 1, &[1, 2, 3, 4, 5, 6], ExtendedColorType::Rgb8),
        )
        .unwrap();
        fs::write(d.join("c.jpg"), b"").unwrap();
        fs::write(d.join("d.jpg"), b"hello, not an image\n").unwrap();
        fs::write(
            d.join("e.png"),
            png(100, 100, &[9; 30000], ExtendedColorType::Rgb8),
        )
        .unwrap();

        let mut src = crate::source::open_with(d.to_str().unwrap(), &tiny_ok()).unwrap();
        let mut f = Frame::new();
        let next_err = |src: &mut Box<dyn FrameSource>, f: &mut Frame| {
            let e = src.next_frame(f).unwrap().unwrap_err();
            assert!(!e.is_fatal(), "{e}");
            assert_eq!((f.width, f.height, f.rgb.len()), (0, 0, 0));
            e.to_string()
        };
        let msg = next_err(&mut src, &mut f);
        assert!(
            msg.contains("a.png")
                && msg.contains("input.max_pixels")
                && msg.contains("30000x30000"),
            "{msg}"
        );
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), f.rgb.as_slice()),
            ("b.png", &[1u8, 2, 3, 4, 5, 6][..])
        );
        let msg = next_err(&mut src, &mut f);
        assert!(msg.contains("c.jpg") && msg.contains("empty file"), "{msg}");
        assert!(!msg.contains("truncated"), "{msg}");
        let msg = next_err(&mut src, &mut f);
        assert!(
            msg.contains("d.jpg") && msg.contains("not a JPEG or PNG") && msg.contains("hello"),
            "{msg}"
        );
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.name.as_str(), f.width, f.height), ("e.png", 100, 100));
        assert!(src.next_frame(&mut f).is_none());

        // A real 100x100 PNG over a limit of 5000 pixels: skipped, the others still read.
        let options = InputConfig {
            max_pixels: 5000,
            ..tiny_ok()
        };
        let mut src = crate::source::open_with(d.to_str().unwrap(), &options).unwrap();
        let mut errors = Vec::new();
        let mut decoded = Vec::new();
        while let Some(r) = src.next_frame(&mut f) {
            match r {
                Ok(()) => decoded.push(f.name.clone()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        assert_eq!(decoded, ["b.png"]);
        assert_eq!(errors.len(), 4, "{errors:?}");
        let e = &errors[3];
        assert!(
            e.contains("e.png") && e.contains("100x100") && e.contains("input.max_pixels = 5000"),
            "{e}"
        );
    }

    #[test]
    fn images_under_the_minimum_size_are_skipped_naming_the_key() {
        let dir = TempDir::new("small");
        let d = &dir.0;
        fs::write(
            d.join("a.png"),
            png(1, 1, &[5, 6, 7], ExtendedColorType::Rgb8),
        )
        .unwrap();
        fs::write(
            d.join("b.png"),
            png(64, 31, &[9; 64 * 31], ExtendedColorType::L8),
        )
        .unwrap();
        fs::write(
            d.join("c.png"),
            png(32, 32, &[9; 32 * 32], ExtendedColorType::L8),
        )
        .unwrap();
        let mut src = open(d.to_str().unwrap()).unwrap();
        let mut f = Frame::new();
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(!e.is_fatal());
        let msg = e.to_string();
        assert!(
            msg.contains("a.png") && msg.contains("1x1") && msg.contains("input.min_width"),
            "{msg}"
        );
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(!e.is_fatal());
        let msg = e.to_string();
        assert!(
            msg.contains("64x31") && msg.contains("input.min_height = 32"),
            "{msg}"
        );
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.name.as_str(), f.width, f.height), ("c.png", 32, 32));
        assert!(src.next_frame(&mut f).is_none());
    }
}
