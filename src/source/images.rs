//! Image-file sources: a directory of JPEG/PNG files (in name order), a list of image files, or
//! one file (the `Folder` source), and the decoding of one JPEG or PNG into an RGB8 [`Frame`]
//! (any 8 or 16 bit grey / grey+alpha / RGB / RGBA layout, alpha dropped).

use std::fs::{self, File};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder, Limits};

use super::{has_extension, Frame, FrameSource, InputConfig, SourceError, IMAGE_EXTENSIONS};

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
        let decoded = decode_image(path, &self.file_buf, frame, &mut self.scratch);
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
}

/// Decodes a JPEG or PNG (by magic bytes, else by extension) into `frame` as RGB8.
fn decode_image(
    path: &Path,
    bytes: &[u8],
    frame: &mut Frame,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
    let is_png = bytes.starts_with(PNG_MAGIC)
        || (!bytes.starts_with(&[0xFF, 0xD8]) && has_extension(path, &["png"]));
    let cursor = Cursor::new(bytes);
    if is_png {
        let dec = PngDecoder::new(cursor).map_err(|e| format!("PNG: {e}"))?;
        decode_with(dec, frame, scratch).map_err(|e| format!("PNG: {e}"))
    } else {
        // The JPEG decoder fills a cut-off file with grey and reports success; a frame that lost
        // its tail (camera dropped out mid-write) must be refused, so look for end-of-image.
        if !ends_with_jpeg_eoi(bytes) {
            return Err("JPEG: truncated (no end-of-image marker)".into());
        }
        let dec = JpegDecoder::new(cursor).map_err(|e| format!("JPEG: {e}"))?;
        decode_with(dec, frame, scratch).map_err(|e| format!("JPEG: {e}"))
    }
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
) -> Result<(), String> {
    dec.set_limits(Limits::default())
        .map_err(|e| e.to_string())?;
    let (w, h) = dec.dimensions();
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
    use crate::source::tests::TempDir;
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};

    fn png(w: u32, h: u32, data: &[u8], ct: ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(data, w, h, ct)
            .unwrap();
        out
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
        let mut src = open(spec).unwrap();
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
}
