//! Frame source stage: turns a folder of JPEG/PNG images or a YUV4MPEG2 stream
//! (file or stdin) into RGB8 frames, one at a time, reusing all buffers.
//!
//! Steady state allocates nothing where this module controls it: file bytes, the
//! decoded picture, conversion scratch and y4m plane data all live in buffers that
//! grow to the largest frame seen and are then reused. (The `image` JPEG decoder
//! copies its input internally; that copy is outside our control.)

use std::fmt;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegDecoder;
use serde::{Deserialize, Serialize};

use crate::config::KeyError;
use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder, Limits};

/// Longest header or FRAME line accepted in a YUV4MPEG2 stream.
const MAX_LINE: usize = 4096;
/// Largest width or height accepted in a YUV4MPEG2 header.
const MAX_DIM: u32 = 16384;
/// Buffer size of the stream reader.
const READ_BUF: usize = 1 << 16;

/// One decoded frame, RGB8 interleaved, reused from frame to frame (buffers grow, never shrink).
#[derive(Clone, Default)]
pub struct Frame {
    /// Counts from 0 over every frame attempted, failed ones included.
    pub index: u64,
    /// File name for a folder ("000123.jpg"), "<source>#<n>" for a y4m stream ("stdin#17").
    pub name: String,
    /// Stream time of the frame in milliseconds since the first frame of its source (from the
    /// stream's own rate when it states one, else [`InputConfig::fps`]).
    pub time_ms: u64,
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

impl Frame {
    pub fn new() -> Self {
        Frame::default()
    }

    /// Starts a new attempt: sets index and name, clears the picture (keeps capacity).
    fn begin(&mut self, index: u64, fps: f64) {
        self.index = index;
        self.time_ms = frame_time_ms(index, fps);
        self.name.clear();
        self.width = 0;
        self.height = 0;
        self.rgb.clear();
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("time_ms", &self.time_ms)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("rgb_len", &self.rgb.len())
            .finish()
    }
}

/// Why opening a source or decoding a frame failed.
#[derive(Debug)]
pub enum SourceError {
    /// The source could not be opened (missing path, unreadable file or directory).
    Open { spec: String, source: io::Error },
    /// The spec is not "-", a directory or a .y4m file, or the directory holds no images.
    Unsupported { spec: String, reason: String },
    /// One image file of a folder could not be read. Not fatal.
    ImageIo {
        path: PathBuf,
        index: u64,
        source: io::Error,
    },
    /// One image file of a folder could not be decoded (corrupt, truncated, odd pixel format). Not fatal.
    ImageDecode {
        path: PathBuf,
        index: u64,
        message: String,
    },
    /// The YUV4MPEG2 header is missing, malformed or asks for an unsupported format.
    Header {
        source_name: String,
        message: String,
    },
    /// Reading the YUV4MPEG2 stream failed.
    StreamIo {
        source_name: String,
        frame: u64,
        source: io::Error,
    },
    /// The YUV4MPEG2 stream ended inside a frame (inside its FRAME line or its planes).
    Truncated {
        source_name: String,
        frame: u64,
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// Something other than a FRAME line where a YUV4MPEG2 frame should start.
    BadFrameLine {
        source_name: String,
        frame: u64,
        found: String,
    },
}

impl SourceError {
    /// False for a single bad image in a folder (the run goes on with the next file);
    /// true for anything that ends the source.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            SourceError::ImageIo { .. } | SourceError::ImageDecode { .. }
        )
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Open { spec, source } => {
                write!(f, "cannot open frame source '{spec}': {source}")
            }
            SourceError::Unsupported { spec, reason } => {
                write!(f, "unsupported frame source '{spec}': {reason}")
            }
            SourceError::ImageIo {
                path,
                index,
                source,
            } => write!(
                f,
                "frame {index} ({}): cannot read file: {source}",
                path.display()
            ),
            SourceError::ImageDecode {
                path,
                index,
                message,
            } => write!(
                f,
                "frame {index} ({}): cannot decode image: {message}",
                path.display()
            ),
            SourceError::Header {
                source_name,
                message,
            } => write!(f, "y4m {source_name}: bad YUV4MPEG2 header: {message}"),
            SourceError::StreamIo {
                source_name,
                frame,
                source,
            } => write!(
                f,
                "y4m {source_name}: read error in frame {frame} ({source_name}#{frame}): {source}"
            ),
            SourceError::Truncated {
                source_name,
                frame,
                what,
                expected,
                found,
            } => write!(
                f,
                "y4m {source_name}: stream truncated in frame {frame} ({source_name}#{frame}): \
                 {what} needs {expected} bytes, found only {found}"
            ),
            SourceError::BadFrameLine {
                source_name,
                frame,
                found,
            } => write!(
                f,
                "y4m {source_name}: frame {frame} ({source_name}#{frame}): expected a FRAME line, found {found:?}"
            ),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Open { source, .. }
            | SourceError::ImageIo { source, .. }
            | SourceError::StreamIo { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Where frames come from: a folder or list of image files, a YUV4MPEG2 stream, a camera.
///
/// A source decodes one frame at a time into a caller-owned [`Frame`] whose buffers it reuses,
/// and stamps it with its stream time. A new kind of input is a new type implementing this
/// trait; the job loop ([`crate::run`]) does not change.
pub trait FrameSource: Send {
    /// Decodes the next frame into `frame`. None at the end. Some(Err) for a frame that failed:
    /// a non-fatal error ([`SourceError::is_fatal`]) skips one frame and the next call goes on;
    /// after a fatal one the source is finished (the next call returns None).
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>>;

    /// One line for logs, e.g. "folder ../x (2289 images)" / "y4m stdin 640x360 30000:1001 C420jpeg limited".
    fn describe(&self) -> String;

    /// Number of frames when known in advance (a folder); None for a stream.
    fn len_hint(&self) -> Option<usize> {
        None
    }
}

/// The `[input]` section: how frames are stamped with time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Frame rate of image files (a folder, a list, one file) for their stream time: frame `i`
    /// is at `i * 1000 / fps` ms. A y4m stream uses the rate in its header (this one when it
    /// has none).
    pub fps: f64,
    /// Timestamp of the first frame, ms since the Unix epoch; 0 = the time the run starts.
    pub start_ms: u64,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            fps: 15.0,
            start_ms: 0,
        }
    }
}

impl InputConfig {
    /// Checks the values, naming the first bad key (relative to `[input]`).
    pub fn validate(&self) -> Result<(), KeyError> {
        if !(self.fps > 0.0 && self.fps.is_finite()) {
            return Err(KeyError::new(
                "fps",
                format!("must be positive, got {}", self.fps),
            ));
        }
        Ok(())
    }
}

/// Stream time of frame `index` at `fps` frames per second, in whole milliseconds.
pub fn frame_time_ms(index: u64, fps: f64) -> u64 {
    (index as f64 * (1000.0 / fps)) as u64
}

/// Opens a source by its command-line spec, with the default [`InputConfig`].
pub fn open(spec: &str) -> Result<Box<dyn FrameSource>, SourceError> {
    open_with(spec, &InputConfig::default())
}

/// Opens a source by its command-line spec: "-" = YUV4MPEG2 on stdin; a directory = its
/// *.jpg/*.jpeg/*.png files (case-insensitive) in name order; a file ending .y4m = a YUV4MPEG2
/// file; a single .jpg/.jpeg/.png file = that one frame; several image files separated by
/// commas = those frames, in the order given.
pub fn open_with(spec: &str, options: &InputConfig) -> Result<Box<dyn FrameSource>, SourceError> {
    if spec == "-" {
        return Ok(Box::new(Y4m::open(
            "stdin",
            Box::new(io::stdin()),
            options,
        )?));
    }
    let path = Path::new(spec);
    if spec.contains(',') && !path.exists() {
        let files = spec.split(',').filter(|s| !s.is_empty()).map(PathBuf::from);
        return Ok(Box::new(Folder::from_files(spec, files, options)?));
    }
    let meta = fs::metadata(path).map_err(|source| SourceError::Open {
        spec: spec.to_string(),
        source,
    })?;
    if meta.is_dir() {
        return Ok(Box::new(Folder::open(spec, options)?));
    }
    if has_extension(path, &["y4m"]) {
        let file = File::open(path).map_err(|source| SourceError::Open {
            spec: spec.to_string(),
            source,
        })?;
        let name = path
            .file_name()
            .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned());
        return Ok(Box::new(Y4m::open(&name, Box::new(file), options)?));
    }
    if has_extension(path, IMAGE_EXTENSIONS) {
        return Ok(Box::new(Folder::from_files(
            spec,
            std::iter::once(path.to_path_buf()),
            options,
        )?));
    }
    Err(SourceError::Unsupported {
        spec: spec.to_string(),
        reason: "expected '-' (y4m on stdin), a directory of .jpg/.jpeg/.png images, a .y4m \
                 file, an image file, or image files separated by commas"
            .to_string(),
    })
}

/// File name endings read as images.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

fn has_extension(path: &Path, wanted: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| wanted.iter().any(|w| e.eq_ignore_ascii_case(w)))
}

// ---------------------------------------------------------------------------------------------
// Folder of images

struct Folder {
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
    fn open(spec: &str, options: &InputConfig) -> Result<Folder, SourceError> {
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
    fn from_files(
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

// ---------------------------------------------------------------------------------------------
// YUV4MPEG2

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chroma {
    /// 4:2:0, planes Y (w*h), U and V (ceil(w/2)*ceil(h/2) each).
    Yuv420,
    /// 4:4:4, three w*h planes.
    Yuv444,
    /// Y plane only.
    Mono,
}

#[derive(Debug, Clone)]
struct Y4mHeader {
    width: u32,
    height: u32,
    fps: Option<(u32, u32)>,
    chroma: Chroma,
    /// The C tag as written (without the C), "420jpeg" when absent.
    colour_tag: String,
    full_range: bool,
}

impl Y4mHeader {
    /// Bytes of plane data per frame (Y, then U, then V).
    fn frame_bytes(&self) -> Option<usize> {
        let w = self.width as usize;
        let h = self.height as usize;
        let luma = w.checked_mul(h)?;
        match self.chroma {
            Chroma::Mono => Some(luma),
            Chroma::Yuv444 => luma.checked_mul(3),
            Chroma::Yuv420 => {
                let c = w.div_ceil(2).checked_mul(h.div_ceil(2))?;
                luma.checked_add(c.checked_mul(2)?)
            }
        }
    }
}

/// Parses a YUV4MPEG2 header line (with or without its trailing newline).
fn parse_header(line: &[u8]) -> Result<Y4mHeader, String> {
    let text = std::str::from_utf8(line)
        .map_err(|_| "header is not ASCII text".to_string())?
        .trim_end_matches(['\n', '\r']);
    let mut tokens = text.split(' ').filter(|t| !t.is_empty());
    match tokens.next() {
        Some("YUV4MPEG2") => {}
        other => {
            return Err(format!(
                "expected magic 'YUV4MPEG2', found {:?}",
                other.unwrap_or("")
            ))
        }
    }
    let mut width = None;
    let mut height = None;
    let mut fps = None;
    let mut colour_tag = "420jpeg".to_string();
    let mut chroma = Chroma::Yuv420;
    let mut full_range = false;
    for token in tokens {
        let (tag, value) = token.split_at(1);
        match tag {
            "W" => width = Some(parse_dim(token, value)?),
            "H" => height = Some(parse_dim(token, value)?),
            "F" => {
                let parsed = value
                    .split_once(':')
                    .and_then(|(n, d)| Some((n.parse().ok()?, d.parse().ok()?)));
                fps = Some(parsed.ok_or_else(|| format!("bad frame rate '{token}'"))?);
            }
            "C" => {
                chroma = match value {
                    "420jpeg" | "420paldv" | "420mpeg2" | "420" => Chroma::Yuv420,
                    "444" => Chroma::Yuv444,
                    "mono" => Chroma::Mono,
                    _ => {
                        return Err(format!(
                            "unsupported colour space '{token}' (supported: C420jpeg, C420paldv, \
                             C420mpeg2, C420, C444, Cmono; 8 bit only)"
                        ))
                    }
                };
                colour_tag = value.to_string();
            }
            "X" => {
                if let Some(range) = value.strip_prefix("COLORRANGE=") {
                    full_range = match range {
                        "FULL" => true,
                        "LIMITED" => false,
                        _ => return Err(format!("unknown colour range '{token}'")),
                    };
                }
            }
            // I (interlacing), A (aspect) and unknown tags do not change the pixel layout.
            _ => {}
        }
    }
    let width = width.ok_or("missing width tag W")?;
    let height = height.ok_or("missing height tag H")?;
    Ok(Y4mHeader {
        width,
        height,
        fps,
        chroma,
        colour_tag,
        full_range,
    })
}

fn parse_dim(token: &str, value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(v) if (1..=MAX_DIM).contains(&v) => Ok(v),
        _ => Err(format!("bad dimension '{token}' (expected 1..={MAX_DIM})")),
    }
}

/// Reads one '\n'-terminated line of at most `MAX_LINE` bytes into `buf`.
/// Returns the bytes read and whether the line ended with '\n'.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    buf.clear();
    let n = reader.take(MAX_LINE as u64).read_until(b'\n', buf)?;
    Ok((n, buf.last() == Some(&b'\n')))
}

/// Fills `buf` unless the reader ends first; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

struct Y4m {
    name: String,
    reader: BufReader<Box<dyn Read + Send>>,
    header: Y4mHeader,
    frame_bytes: usize,
    coeffs: Coeffs,
    /// FRAME line, reused.
    line: Vec<u8>,
    /// Plane data of one frame, reused.
    data: Vec<u8>,
    /// 4:2:0 upsampling buffers, reused.
    upsample: Upsample,
    next_index: u64,
    /// Frame rate for stream time: the header's, else [`InputConfig::fps`].
    fps: f64,
    done: bool,
}

impl FrameSource for Y4m {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        self.read_next(frame)
    }

    fn describe(&self) -> String {
        let h = &self.header;
        let fps = match h.fps {
            Some((n, d)) => format!("{n}:{d}"),
            None => "?fps".to_string(),
        };
        format!(
            "y4m {} {}x{} {} C{} {}",
            self.name,
            h.width,
            h.height,
            fps,
            h.colour_tag,
            if h.full_range { "full" } else { "limited" }
        )
    }
}

impl Y4m {
    fn open(
        name: &str,
        reader: Box<dyn Read + Send>,
        options: &InputConfig,
    ) -> Result<Y4m, SourceError> {
        let header_err = |message: String| SourceError::Header {
            source_name: name.to_string(),
            message,
        };
        let mut reader = BufReader::with_capacity(READ_BUF, reader);
        let mut line = Vec::new();
        let (n, complete) = read_line(&mut reader, &mut line)
            .map_err(|e| header_err(format!("cannot read header: {e}")))?;
        if n == 0 {
            return Err(header_err(
                "empty stream, expected a YUV4MPEG2 header".into(),
            ));
        }
        if !complete {
            return Err(header_err(if n >= MAX_LINE {
                format!("header line longer than {MAX_LINE} bytes")
            } else {
                format!("stream ends inside the header line after {n} bytes")
            }));
        }
        let header = parse_header(&line).map_err(header_err)?;
        let frame_bytes = header
            .frame_bytes()
            .ok_or_else(|| header_err("frame size overflows".into()))?;
        let coeffs = if header.full_range {
            Coeffs::FULL
        } else {
            Coeffs::LIMITED
        };
        let fps = match header.fps {
            Some((n, d)) if n > 0 && d > 0 => f64::from(n) / f64::from(d),
            _ => options.fps,
        };
        Ok(Y4m {
            fps,
            next_index: 0,
            name: name.to_string(),
            reader,
            header,
            frame_bytes,
            coeffs,
            line,
            data: Vec::new(),
            upsample: Upsample::default(),
            done: false,
        })
    }

    fn read_next(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        if self.done {
            return None;
        }
        let index = self.next_index;
        let result = self.read_frame(index);
        match result {
            // Clean end of stream before a FRAME line.
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                self.next_index += 1;
                frame.begin(index, self.fps);
                let _ = write!(frame.name, "{}#{}", self.name, index);
                self.convert(frame);
                Some(Ok(()))
            }
            Err(e) => {
                self.next_index += 1;
                self.done = true;
                frame.begin(index, self.fps);
                let _ = write!(frame.name, "{}#{}", self.name, index);
                Some(Err(e))
            }
        }
    }

    /// Reads the FRAME line and the planes of frame `index` into `self.data`.
    /// Ok(false) at a clean end of stream.
    fn read_frame(&mut self, index: u64) -> Result<bool, SourceError> {
        let io_err = |source| SourceError::StreamIo {
            source_name: self.name.clone(),
            frame: index,
            source,
        };
        let (n, complete) = read_line(&mut self.reader, &mut self.line).map_err(io_err)?;
        if n == 0 {
            return Ok(false);
        }
        if !complete && n < MAX_LINE {
            return Err(SourceError::Truncated {
                source_name: self.name.clone(),
                frame: index,
                what: "FRAME line",
                expected: b"FRAME\n".len().max(n + 1),
                found: n,
            });
        }
        let line = &self.line;
        let is_frame = complete
            && line.starts_with(b"FRAME")
            && matches!(line.get(5), Some(b'\n' | b' ' | b'\r'));
        if !is_frame {
            let shown = &line[..line.len().min(40)];
            return Err(SourceError::BadFrameLine {
                source_name: self.name.clone(),
                frame: index,
                found: String::from_utf8_lossy(shown).into_owned(),
            });
        }
        self.data.resize(self.frame_bytes, 0);
        let got = read_full(&mut self.reader, &mut self.data).map_err(|source| {
            SourceError::StreamIo {
                source_name: self.name.clone(),
                frame: index,
                source,
            }
        })?;
        if got < self.frame_bytes {
            return Err(SourceError::Truncated {
                source_name: self.name.clone(),
                frame: index,
                what: "Y/U/V planes",
                expected: self.frame_bytes,
                found: got,
            });
        }
        Ok(true)
    }

    fn convert(&mut self, frame: &mut Frame) {
        let h = &self.header;
        let (w, ht) = (h.width as usize, h.height as usize);
        let luma = w * ht;
        frame.width = h.width;
        frame.height = h.height;
        frame.rgb.resize(luma * 3, 0);
        let data = &self.data;
        let k = &self.coeffs;
        match h.chroma {
            Chroma::Mono => convert_mono(&data[..luma], k, &mut frame.rgb),
            Chroma::Yuv444 => {
                let (y, rest) = data.split_at(luma);
                let (u, v) = rest.split_at(luma);
                convert_444(y, u, v, k, &mut frame.rgb);
            }
            Chroma::Yuv420 => {
                let c = w.div_ceil(2) * ht.div_ceil(2);
                let (y, rest) = data.split_at(luma);
                let (u, v) = rest.split_at(c);
                convert_420(
                    Planes420 { y, u, v, w, h: ht },
                    k,
                    &mut self.upsample,
                    &mut frame.rgb,
                );
            }
        }
    }
}

/// BT.601 YCbCr -> RGB in 16.16 fixed point.
struct Coeffs {
    y_off: i32,
    y_mul: i32,
    rv: i32,
    gu: i32,
    gv: i32,
    bu: i32,
}

impl Coeffs {
    /// Limited ("TV") range: Y 16..235, Cb/Cr 16..240. Y scale 255/219, chroma scale 255/224.
    const LIMITED: Coeffs = Coeffs {
        y_off: 16,
        y_mul: 76309, // 1.164384
        rv: 104597,   // 1.596027
        gu: 25675,    // 0.391762
        gv: 53279,    // 0.812968
        bu: 132201,   // 2.017232
    };
    /// Full ("PC"/JPEG) range.
    const FULL: Coeffs = Coeffs {
        y_off: 0,
        y_mul: 65536,
        rv: 91881,  // 1.402
        gu: 22553,  // 0.344136
        gv: 46802,  // 0.714136
        bu: 116130, // 1.772
    };

    #[inline(always)]
    fn rgb(&self, y: u8, u: u8, v: u8, out: &mut [u8]) {
        let yy = (i32::from(y) - self.y_off) * self.y_mul + (1 << 15);
        let u = i32::from(u) - 128;
        let v = i32::from(v) - 128;
        out[0] = clamp8((yy + self.rv * v) >> 16);
        out[1] = clamp8((yy - self.gu * u - self.gv * v) >> 16);
        out[2] = clamp8((yy + self.bu * u) >> 16);
    }

    #[inline(always)]
    fn grey(&self, y: u8) -> u8 {
        clamp8(((i32::from(y) - self.y_off) * self.y_mul + (1 << 15)) >> 16)
    }
}

#[inline(always)]
fn clamp8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

fn convert_mono(y: &[u8], k: &Coeffs, rgb: &mut [u8]) {
    for (&y, out) in y.iter().zip(rgb.chunks_exact_mut(3)) {
        out.fill(k.grey(y));
    }
}

fn convert_444(y: &[u8], u: &[u8], v: &[u8], k: &Coeffs, rgb: &mut [u8]) {
    for (((&y, &u), &v), out) in y.iter().zip(u).zip(v).zip(rgb.chunks_exact_mut(3)) {
        k.rgb(y, u, v, out);
    }
}

struct Planes420<'a> {
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
    w: usize,
    h: usize,
}

/// 4:2:0 -> RGB with bilinear ("triangle", as libjpeg's fancy upsampling) chroma upsampling,
/// chroma samples taken as centred between luma samples (C420jpeg siting; C420mpeg2/paldv
/// siting differs by a quarter pixel, which we ignore). Each output pixel blends its chroma
/// sample with weight 3/4 and the nearest neighbour with 1/4, vertically and horizontally;
/// edges repeat the border sample. Odd sizes: chroma planes are ceil(w/2) x ceil(h/2).
fn convert_420(p: Planes420<'_>, k: &Coeffs, scratch: &mut Upsample, rgb: &mut [u8]) {
    let (w, h) = (p.w, p.h);
    let cw = w.div_ceil(2);
    let ch = h.div_ceil(2);
    // Blended chroma rows are padded with one repeated sample at each end, so the
    // horizontal pass needs no edge cases or bounds checks.
    scratch.row_u.resize(cw + 2, 0);
    scratch.row_v.resize(cw + 2, 0);
    scratch.hu.resize(2 * cw, 0);
    scratch.hv.resize(2 * cw, 0);
    let Upsample {
        row_u,
        row_v,
        hu,
        hv,
    } = scratch;
    for (row, (yrow, out)) in
        p.y.chunks_exact(w)
            .zip(rgb.chunks_exact_mut(w * 3))
            .enumerate()
            .take(h)
    {
        let cy = row / 2;
        let far = if row % 2 == 0 {
            cy.saturating_sub(1)
        } else {
            (cy + 1).min(ch - 1)
        };
        let (un, uf) = (&p.u[cy * cw..][..cw], &p.u[far * cw..][..cw]);
        let (vn, vf) = (&p.v[cy * cw..][..cw], &p.v[far * cw..][..cw]);
        blend_vertical(un, uf, row_u);
        blend_vertical(vn, vf, row_v);
        blend_horizontal(row_u, hu);
        blend_horizontal(row_v, hv);
        convert_444(yrow, &hu[..w], &hv[..w], k, out);
    }
}

/// Reused buffers of the 4:2:0 upsampler.
#[derive(Default)]
struct Upsample {
    /// 3 * near + far chroma row (0..=1020), padded: [c0, c0, c1, .., c_last, c_last].
    row_u: Vec<u16>,
    row_v: Vec<u16>,
    /// Full-resolution chroma row (2 * ceil(w/2) samples).
    hu: Vec<u8>,
    hv: Vec<u8>,
}

/// `out[1..=n] = 3 * near + far`, then repeats the end samples into the padding.
#[inline(always)]
fn blend_vertical(near: &[u8], far: &[u8], out: &mut [u16]) {
    let n = near.len();
    for ((d, &a), &b) in out[1..=n].iter_mut().zip(near).zip(far) {
        *d = 3 * u16::from(a) + u16::from(b);
    }
    out[0] = out[1];
    out[n + 1] = out[n];
}

/// Each chroma sample gives two output samples: (3 * own + left) / 16 and (3 * own + right) / 16.
#[inline(always)]
fn blend_horizontal(padded: &[u16], out: &mut [u8]) {
    for (win, o) in padded.windows(3).zip(out.chunks_exact_mut(2)) {
        let c = 3 * win[1] + 8;
        o[0] = ((c + win[0]) >> 4) as u8;
        o[1] = ((c + win[2]) >> 4) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};

    fn y4m_source(bytes: Vec<u8>) -> Result<Box<dyn FrameSource>, SourceError> {
        Y4m::open("mem", Box::new(Cursor::new(bytes)), &InputConfig::default())
            .map(|y| Box::new(y) as Box<dyn FrameSource>)
    }

    fn stream(header: &str, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("{header}\n").into_bytes();
        for f in frames {
            out.extend_from_slice(b"FRAME\n");
            out.extend_from_slice(f);
        }
        out
    }

    fn assert_close(got: &[u8], want: &[u8], tol: u8) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.abs_diff(w) <= tol,
                "byte {i}: got {g}, want {w} (all: {got:?})"
            );
        }
    }

    #[test]
    fn header_good() {
        let h = parse_header(
            b"YUV4MPEG2 W640 H360 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=FULL\n",
        )
        .unwrap();
        assert_eq!((h.width, h.height), (640, 360));
        assert_eq!(h.fps, Some((30000, 1001)));
        assert_eq!(h.chroma, Chroma::Yuv420);
        assert!(h.full_range);
        assert_eq!(h.frame_bytes(), Some(640 * 360 * 3 / 2));

        // Any order, missing C = 420jpeg, default limited range, unknown tags ignored.
        let h = parse_header(b"YUV4MPEG2 H3 Zfoo W5 Xbar=1").unwrap();
        assert_eq!((h.width, h.height), (5, 3));
        assert_eq!(h.chroma, Chroma::Yuv420);
        assert_eq!(h.colour_tag, "420jpeg");
        assert!(!h.full_range);
        assert_eq!(h.fps, None);
        assert_eq!(h.frame_bytes(), Some(15 + 2 * 3 * 2));

        for (tag, chroma) in [
            ("C420paldv", Chroma::Yuv420),
            ("C420mpeg2", Chroma::Yuv420),
            ("C420", Chroma::Yuv420),
            ("C444", Chroma::Yuv444),
            ("Cmono", Chroma::Mono),
        ] {
            let h = parse_header(format!("YUV4MPEG2 W2 H2 {tag}").as_bytes()).unwrap();
            assert_eq!(h.chroma, chroma, "{tag}");
        }
    }

    #[test]
    fn header_errors() {
        let e = parse_header(b"YUV4MPEG2 H360 F25:1\n").unwrap_err();
        assert!(e.contains("W"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W10 F25:1\n").unwrap_err();
        assert!(e.contains("H"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W4 H4 C422\n").unwrap_err();
        assert!(e.contains("C422"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W4 H4 C420p10 XYSCSS=420P10\n").unwrap_err();
        assert!(e.contains("C420p10"), "{e}");
        let e = parse_header(b"YUV4MPEG W4 H4\n").unwrap_err();
        assert!(e.contains("magic"), "{e}");
        let e = parse_header(b"YUV4MPEG2 W0 H4\n").unwrap_err();
        assert!(e.contains("W0"), "{e}");

        // Through the source: fatal Header errors naming the source.
        let Err(e) = y4m_source(b"YUV4MPEG2 W4 H4 C422\nFRAME\n".to_vec()) else {
            panic!("C422 accepted");
        };
        assert!(e.is_fatal());
        assert!(matches!(e, SourceError::Header { .. }));
        let msg = e.to_string();
        assert!(msg.contains("mem") && msg.contains("C422"), "{msg}");
        assert!(y4m_source(Vec::new()).is_err());
        assert!(y4m_source(b"YUV4MPEG2 W4 H4".to_vec()).is_err());
    }

    #[test]
    fn y4m_444_known_values() {
        // 2x2 limited: white, black, red (BT.601 Y=81 U=90 V=240), mid grey.
        let y = [235, 16, 81, 126];
        let u = [128, 128, 90, 128];
        let v = [128, 128, 240, 128];
        let frame0: Vec<u8> = [&y[..], &u, &v].concat();
        let bytes = stream("YUV4MPEG2 W2 H2 F25:1 C444", &[frame0.clone(), frame0]);
        let mut src = y4m_source(bytes).unwrap();
        assert_eq!(src.len_hint(), None);
        assert_eq!(src.describe(), "y4m mem 2x2 25:1 C444 limited");
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.width, f.height, f.index), (2, 2, 0));
        assert_eq!(f.name, "mem#0");
        assert_eq!(&f.rgb[..6], &[255, 255, 255, 0, 0, 0]);
        assert_close(&f.rgb[6..], &[255, 0, 0, 128, 128, 128], 2);
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.index, f.name.as_str()), (1, "mem#1"));
        assert!(src.next_frame(&mut f).is_none());
        assert!(src.next_frame(&mut f).is_none());

        // Full range: Y passes through for grey; pure blue Y=29 U=255 V=107.
        let frame0: Vec<u8> = [&[128u8, 29][..], &[128, 255], &[128, 107]].concat();
        let bytes = stream("YUV4MPEG2 W2 H1 C444 XCOLORRANGE=FULL", &[frame0]);
        let mut src = y4m_source(bytes).unwrap();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(&f.rgb[..3], &[128, 128, 128]);
        assert_close(&f.rgb[3..], &[0, 0, 255], 2);
    }

    #[test]
    fn y4m_mono() {
        let bytes = stream("YUV4MPEG2 W3 H1 Cmono", &[vec![16, 235, 126]]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(f.rgb, [0, 0, 0, 255, 255, 255, 128, 128, 128]);
    }

    #[test]
    fn y4m_420_known_values_and_odd_size() {
        // 3x3 luma, 2x2 chroma; uniform chroma, so only Y matters.
        let y = [16, 235, 126, 235, 16, 126, 126, 126, 235];
        let frame0: Vec<u8> = [&y[..], &[128; 4], &[128; 4]].concat();
        let bytes = stream("YUV4MPEG2 W3 H3 F30000:1001 Ip A0:0 C420mpeg2", &[frame0]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!((f.width, f.height), (3, 3));
        let want: Vec<u8> = y
            .iter()
            .flat_map(|&y| {
                let g = match y {
                    16 => 0,
                    235 => 255,
                    _ => 128,
                };
                [g, g, g]
            })
            .collect();
        assert_eq!(f.rgb, want);
        assert!(src.next_frame(&mut f).is_none());
    }

    #[test]
    fn y4m_420_chroma_upsampling() {
        // 4x2 luma (all Y=81), 2x1 chroma: left sample red, right sample blue-ish (U=240, V=110).
        // Outer pixels keep their sample; inner pixels blend 3/4 own + 1/4 neighbour.
        let frame0: Vec<u8> = [&[81u8; 8][..], &[90, 240], &[240, 110]].concat();
        let bytes = stream("YUV4MPEG2 W4 H2 C420jpeg", &[frame0]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        let mut want = vec![0u8; 24];
        let k = &Coeffs::LIMITED;
        let blend = |a: u16, b: u16| ((3 * 4 * a + 4 * b + 8) >> 4) as u8;
        let cols = [
            (90, 240),
            (blend(90, 240), blend(240, 110)),
            (blend(240, 90), blend(110, 240)),
            (240, 110),
        ];
        for row in 0..2 {
            for (x, &(u, v)) in cols.iter().enumerate() {
                let i = (row * 4 + x) * 3;
                k.rgb(81, u, v, &mut want[i..i + 3]);
            }
        }
        assert_eq!(f.rgb, want);
        assert_close(&f.rgb[..3], &[255, 0, 0], 2);
        assert!(f.rgb[3] < 255 && f.rgb[3] > f.rgb[6], "{:?}", f.rgb);
    }

    #[test]
    fn y4m_420_matches_naive_reference_on_odd_sizes() {
        let mut seed = 12345u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        for (w, h) in [(1usize, 1usize), (2, 2), (5, 3), (7, 4), (6, 5), (1, 6)] {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let y: Vec<u8> = (0..w * h).map(|_| rnd()).collect();
            let u: Vec<u8> = (0..cw * ch).map(|_| rnd()).collect();
            let v: Vec<u8> = (0..cw * ch).map(|_| rnd()).collect();
            let frame0 = [&y[..], &u, &v].concat();
            let bytes = stream(&format!("YUV4MPEG2 W{w} H{h} XCOLORRANGE=FULL"), &[frame0]);
            let mut src = y4m_source(bytes).unwrap();
            let mut f = Frame::new();
            src.next_frame(&mut f).unwrap().unwrap();
            // Naive per-pixel triangle filter.
            let up = |plane: &[u8], x: usize, yy: usize| -> u8 {
                let (cx, cy) = (x / 2, yy / 2);
                let nx = if x % 2 == 0 {
                    cx.saturating_sub(1)
                } else {
                    (cx + 1).min(cw - 1)
                };
                let ny = if yy % 2 == 0 {
                    cy.saturating_sub(1)
                } else {
                    (cy + 1).min(ch - 1)
                };
                let at = |a: usize, b: usize| u32::from(plane[b * cw + a]);
                let col = |a: usize| 3 * at(a, cy) + at(a, ny);
                ((3 * col(cx) + col(nx) + 8) >> 4) as u8
            };
            let mut want = vec![0u8; w * h * 3];
            for yy in 0..h {
                for x in 0..w {
                    let i = (yy * w + x) * 3;
                    Coeffs::FULL.rgb(
                        y[yy * w + x],
                        up(&u, x, yy),
                        up(&v, x, yy),
                        &mut want[i..i + 3],
                    );
                }
            }
            assert_eq!(f.rgb, want, "{w}x{h}");
        }
    }

    #[test]
    fn y4m_frame_line_with_parameters_and_reuse() {
        let mut bytes = b"YUV4MPEG2 W2 H2 C444\n".to_vec();
        bytes.extend_from_slice(b"FRAME Ixyz\n");
        bytes.extend_from_slice(&[235; 4]);
        bytes.extend_from_slice(&[128; 8]);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        f.rgb = vec![7; 1000];
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(f.rgb, [255; 12]);
        assert!(f.rgb.capacity() >= 1000);
    }

    #[test]
    fn y4m_truncated_frame_is_fatal() {
        let good: Vec<u8> = [&[235u8; 9][..], &[128; 4], &[128; 4]].concat();
        let mut bytes = stream("YUV4MPEG2 W3 H3 C420", &[good.clone(), good]);
        bytes.truncate(bytes.len() - 5);
        let mut src = y4m_source(bytes).unwrap();
        let mut f = Frame::new();
        src.next_frame(&mut f).unwrap().unwrap();
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(e.is_fatal());
        assert_eq!((f.index, f.name.as_str()), (1, "mem#1"));
        let msg = e.to_string();
        assert!(
            msg.contains("frame 1") && msg.contains("17") && msg.contains("12"),
            "{msg}"
        );
        assert!(matches!(
            e,
            SourceError::Truncated {
                frame: 1,
                expected: 17,
                found: 12,
                ..
            }
        ));
        assert!(src.next_frame(&mut f).is_none());

        // EOF inside the FRAME line.
        let mut bytes = stream("YUV4MPEG2 W1 H1 Cmono", &[vec![16]]);
        bytes.extend_from_slice(b"FRA");
        let mut src = y4m_source(bytes).unwrap();
        src.next_frame(&mut f).unwrap().unwrap();
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(e.is_fatal());
        assert!(e.to_string().contains("FRAME line"), "{e}");
        assert!(src.next_frame(&mut f).is_none());

        // Garbage instead of FRAME.
        let mut bytes = stream("YUV4MPEG2 W1 H1 Cmono", &[vec![16]]);
        bytes.extend_from_slice(b"JUNK\n");
        let mut src = y4m_source(bytes).unwrap();
        src.next_frame(&mut f).unwrap().unwrap();
        let e = src.next_frame(&mut f).unwrap().unwrap_err();
        assert!(e.is_fatal() && e.to_string().contains("JUNK"), "{e}");
        assert!(src.next_frame(&mut f).is_none());
    }

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "edgesieve-source-{tag}-{}-{nanos}",
                std::process::id()
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

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

    #[test]
    fn open_errors() {
        let dir = TempDir::new("open");
        let e = open(dir.0.to_str().unwrap()).err().unwrap();
        assert!(e.is_fatal() && e.to_string().contains("no .jpg"), "{e}");
        let missing = dir.0.join("missing.y4m");
        let e = open(missing.to_str().unwrap()).err().unwrap();
        assert!(matches!(e, SourceError::Open { .. }) && e.is_fatal());
        assert!(e.to_string().contains("missing.y4m"));
        let txt = dir.0.join("x.txt");
        fs::write(&txt, b"x").unwrap();
        let e = open(txt.to_str().unwrap()).err().unwrap();
        assert!(matches!(e, SourceError::Unsupported { .. }), "{e}");

        // A .y4m file (upper-case extension) with a bad header.
        let y = dir.0.join("bad.Y4M");
        fs::write(&y, b"YUV4MPEG2 H2 C444\n").unwrap();
        let e = open(y.to_str().unwrap()).err().unwrap();
        let msg = e.to_string();
        assert!(msg.contains("bad.Y4M") && msg.contains("W"), "{msg}");

        // And a good one.
        fs::write(&y, stream("YUV4MPEG2 W1 H1 Cmono", &[vec![235]])).unwrap();
        let mut src = open(y.to_str().unwrap()).unwrap();
        let mut f = Frame::default();
        src.next_frame(&mut f).unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), f.rgb.as_slice()),
            ("bad.Y4M#0", &[255u8; 3][..])
        );
        assert!(src.next_frame(&mut f).is_none());
    }
}
