//! Frame source stage: turns a folder of JPEG/PNG images, a YUV4MPEG2 stream or a stream of
//! header-less raw frames (NV12, I420 or RGB24 of the size in `[input]`; a file, a FIFO, a
//! device or stdin) into RGB8 frames, one at a time, reusing all buffers.
//!
//! Steady state allocates nothing where this module controls it: file bytes, the
//! decoded picture, conversion scratch and stream plane data all live in buffers that
//! grow to the largest frame seen and are then reused. (The `image` JPEG decoder
//! copies its input internally; that copy is outside our control.)
//!
//! This file holds what every source shares: [`Frame`], the [`FrameSource`] trait,
//! [`InputConfig`] with [`InputFormat`], [`SourceError`], and the spec dispatch [`open`] /
//! [`open_with`]. The sources themselves, in data-flow order: `images.rs` (a folder, a list of
//! image files or one file, and their JPEG/PNG decoding), `y4m.rs` (the stream source: the
//! YUV4MPEG2 header parser, and the frame reader shared by y4m and raw streams), and `yuv.rs`
//! (the YUV to RGB conversion maths the stream source uses).

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::KeyError;
use crate::run::shutdown::Shutdown;

#[cfg(test)]
mod counting;
mod images;
pub mod latest;
pub mod threaded;
mod y4m;
mod yuv;

use images::Folder;
use y4m::Stream;

/// One decoded frame, RGB8 interleaved, reused from frame to frame (buffers grow, never shrink).
#[derive(Clone, Default)]
pub struct Frame {
    /// Counts from 0 over every frame attempted, failed ones included.
    pub index: u64,
    /// File name for a folder ("000123.jpg"), `<source>#<n>` for a stream ("stdin#17").
    pub name: String,
    /// Stream time of the frame in milliseconds since the first frame of its source (from the
    /// stream's own rate when it states one, else [`InputConfig::fps`]).
    pub time_ms: u64,
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
    /// Frames a live source dropped before this one since it started (the loop was busy; see
    /// [`latest::Latest`]); 0 for other sources.
    pub dropped_before: u64,
    /// When a live source's reader took the frame off the camera stream; None for other sources,
    /// whose frames arrive when the loop asks for them. The decision latency counts from here.
    pub arrived: Option<Instant>,
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
            .field("dropped_before", &self.dropped_before)
            .field("arrived", &self.arrived)
            .finish()
    }
}

/// Why opening a source or decoding a frame failed.
#[derive(Debug)]
pub enum SourceError {
    /// The source could not be opened (missing path, unreadable file or directory).
    Open { spec: String, source: io::Error },
    /// The spec is not "-", a directory or a .y4m file, or the directory holds no images; or
    /// the raw frame layout of the [`InputConfig`] is invalid (the reason names the key).
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
    /// Reading a stream (y4m or raw) failed.
    StreamIo {
        source_name: String,
        frame: u64,
        source: io::Error,
    },
    /// A stream ended inside a frame (inside a y4m FRAME line, or inside the pixel data of a
    /// y4m or raw frame).
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
                "stream {source_name}: read error in frame {frame} ({source_name}#{frame}): {source}"
            ),
            SourceError::Truncated {
                source_name,
                frame,
                what,
                expected,
                found,
            } => write!(
                f,
                "stream {source_name}: truncated in frame {frame} ({source_name}#{frame}): \
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

/// Where frames come from: a folder or list of image files, a YUV4MPEG2 or raw stream, a camera.
///
/// A source decodes one frame at a time into a caller-owned [`Frame`] whose buffers it reuses,
/// and stamps it with its stream time. A new kind of input is a new type implementing this
/// trait; the job loop ([`crate::run`]) does not change.
pub trait FrameSource: Send {
    /// Decodes the next frame into `frame`. None at the end. Some(Err) for a frame that failed:
    /// a non-fatal error ([`SourceError::is_fatal`]) skips one frame and the next call goes on;
    /// after a fatal one the source is finished (the next call returns None).
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>>;

    /// One line for logs, e.g. "folder ../x (2289 images)" / "y4m stdin 640x360 30000:1001
    /// C420jpeg limited" / "raw stdin 640x360 nv12 limited @15fps".
    fn describe(&self) -> String;

    /// Number of frames when known in advance (a folder); None for a stream.
    fn len_hint(&self) -> Option<usize> {
        None
    }

    /// Frames the source read but dropped because the loop was busy (a live source); 0 for
    /// sources that wait for the loop.
    fn dropped(&self) -> u64 {
        0
    }

    /// The size (width, height) of the frames to come when the source knows it before the first
    /// frame (a stream header, the first image's header), so the detector can be shaped for it.
    fn frame_size(&self) -> Option<(u32, u32)> {
        None
    }

    /// Lets a source that can block (a stream read on its own thread, [`threaded::Prefetch`])
    /// end with None once `shutdown` is asked for. The job loop calls it before the first frame;
    /// other sources ignore it.
    fn watch_shutdown(&mut self, _shutdown: &Shutdown) {}

    /// The camera-fault checks the job loop applies to this source's frames: those of the
    /// [`InputConfig`] it was opened with (the defaults for other sources).
    fn fault_checks(&self) -> FaultChecks {
        FaultChecks::default()
    }
}

/// The `[input]` section: how frames are stamped with time, and which frames are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Frame rate of image files (a folder, a list, one file) and raw streams for their stream
    /// time: frame `i` is at `i * 1000 / fps` ms. A y4m stream uses the rate in its header
    /// (this one when it has none).
    pub fps: f64,
    /// Timestamp of the first frame, ms since the Unix epoch; 0 = the time the run starts.
    pub start_ms: u64,
    /// Largest frame accepted, in pixels (width * height); default 7680 * 4320 (8K). An image
    /// over it is skipped (and counted as failed) before its pixels are allocated; a y4m stream
    /// whose header is over it, or a raw `width` * `height` over it, is refused. Bounds the
    /// memory one small, hostile file can take.
    pub max_pixels: u64,
    /// Narrowest image file accepted, in pixels; a narrower one is skipped (counted as failed).
    /// Keeps degenerate frames (a 1x1 placeholder) out of the selection.
    pub min_width: u32,
    /// Lowest image file accepted, in pixels; a lower one is skipped (counted as failed).
    pub min_height: u32,
    /// Camera-fault check: a frame whose luma standard deviation (0-255, over a sparse sample
    /// of its pixels) is below this is uniform (lens cap, black or blown-out sensor) and is
    /// counted but not selected from; 0 switches the check off.
    pub uniform_stddev: f64,
    /// Camera-fault check: a frame identical to the previous one (a frozen camera repeating
    /// its last frame) is counted but not selected from; false switches the check off.
    pub skip_frozen: bool,
    /// A stream (y4m or raw) on stdin or a FIFO is a live camera: read on its own thread as fast
    /// as it comes, each frame stamped with the wall time it was read, and when the detector is
    /// busy the loop takes the newest frame and older ones are dropped (counted). false
    /// (default): a recording, every frame processed in stream time, the writer waits for the
    /// loop.
    pub live: bool,
    /// How streams are read: "y4m" (default: YUV4MPEG2 from `-`, a FIFO, a character device or
    /// a .y4m file, size and format from its header), or raw frames back to back with no
    /// header, of `width` x `height`: "nv12" (Y plane, then interleaved U/V at half size),
    /// "i420" (Y, U, V planes, as y4m C420) or "rgb24" (RGB bytes). With a raw format `-`,
    /// FIFOs, devices and every file that is not a directory or an image are read as raw
    /// frames, stamped at `fps` (or with the wall clock when `live`).
    pub format: InputFormat,
    /// Frame width in pixels of a raw stream (`format` other than "y4m"), which must set it
    /// (1..=16384); ignored for y4m.
    pub width: u32,
    /// Frame height in pixels of a raw stream, which must set it (1..=16384); ignored for y4m.
    pub height: u32,
    /// YUV range of a raw nv12 / i420 stream: false (default) = limited ("TV", Y 16..235), true
    /// = full ("PC"/JPEG, 0..255). A y4m stream says its range in its header; rgb24 has none.
    pub full_range: bool,
}

/// `input.format`: see [`InputConfig::format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// YUV4MPEG2: a header line, then each frame after a FRAME line.
    #[default]
    Y4m,
    /// Raw NV12: the Y plane (w*h), then ceil(w/2)*ceil(h/2) interleaved U,V pairs.
    Nv12,
    /// Raw I420: the Y plane, then the U and V planes (ceil(w/2)*ceil(h/2) each).
    I420,
    /// Raw RGB24: w*h*3 bytes, row-major R, G, B.
    Rgb24,
}

impl InputFormat {
    /// True for the header-less formats, whose size comes from `input.width` / `input.height`.
    pub fn is_raw(self) -> bool {
        self != InputFormat::Y4m
    }

    /// The config spelling ("nv12").
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Y4m => "y4m",
            InputFormat::Nv12 => "nv12",
            InputFormat::I420 => "i420",
            InputFormat::Rgb24 => "rgb24",
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            fps: 15.0,
            start_ms: 0,
            max_pixels: DEFAULT_MAX_PIXELS,
            min_width: 32,
            min_height: 32,
            uniform_stddev: 2.0,
            skip_frozen: true,
            live: false,
            format: InputFormat::Y4m,
            width: 0,
            height: 0,
            full_range: false,
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
        if self.max_pixels == 0 {
            return Err(KeyError::new("max_pixels", "must be at least 1, got 0"));
        }
        if !(self.uniform_stddev >= 0.0 && self.uniform_stddev.is_finite()) {
            return Err(KeyError::new(
                "uniform_stddev",
                format!("must be 0 (off) or positive, got {}", self.uniform_stddev),
            ));
        }
        if self.format.is_raw() {
            for (key, value) in [("width", self.width), ("height", self.height)] {
                if !(1..=MAX_DIMENSION).contains(&value) {
                    return Err(KeyError::new(
                        key,
                        format!(
                            "must be set (1..={MAX_DIMENSION}) when input.format is \"{}\", \
                             got {value}",
                            self.format
                        ),
                    ));
                }
            }
            let pixels = u64::from(self.width) * u64::from(self.height);
            if pixels > self.max_pixels {
                return Err(KeyError::new(
                    "max_pixels",
                    format!(
                        "raw frames of {}x{} = {pixels} pixels are over the limit of {}",
                        self.width, self.height, self.max_pixels
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The camera-fault checks of the job loop, as configured here.
    pub fn fault_checks(&self) -> FaultChecks {
        FaultChecks {
            uniform_stddev: self.uniform_stddev,
            skip_frozen: self.skip_frozen,
        }
    }
}

/// The camera-fault checks the job loop ([`crate::run::run_job`]) applies to each decoded
/// frame before handing it on (see [`InputConfig::uniform_stddev`], [`InputConfig::skip_frozen`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultChecks {
    pub uniform_stddev: f64,
    pub skip_frozen: bool,
}

impl Default for FaultChecks {
    fn default() -> Self {
        InputConfig::default().fault_checks()
    }
}

/// Largest frame width or height of a stream (a y4m header, a raw stream's `input.width` /
/// `input.height`).
pub const MAX_DIMENSION: u32 = 16384;

/// Default of [`InputConfig::max_pixels`]: 7680 * 4320 (8K UHD).
pub const DEFAULT_MAX_PIXELS: u64 = 7680 * 4320;

/// Stream time of frame `index` at `fps` frames per second, in whole milliseconds.
pub fn frame_time_ms(index: u64, fps: f64) -> u64 {
    (index as f64 * (1000.0 / fps)) as u64
}

/// Opens a source by its command-line spec, with the default [`InputConfig`].
pub fn open(spec: &str) -> Result<Box<dyn FrameSource>, SourceError> {
    open_with(spec, &InputConfig::default())
}

/// Opens a source by its command-line spec: "-" = YUV4MPEG2 on stdin; a directory = its
/// *.jpg/*.jpeg/*.png files (case-insensitive) in name order; a file ending .y4m, a FIFO or a
/// character device = a YUV4MPEG2 stream; a single .jpg/.jpeg/.png file = that one frame;
/// several image files separated by commas = those frames, in the order given.
///
/// With a raw `options.format` (nv12, i420, rgb24) "-", FIFOs, character devices and every
/// other file that is not an image (.y4m included) are streams of raw frames instead.
///
/// Stdin, FIFOs and devices are read on a background thread ([`threaded::Prefetch`], or
/// [`latest::Latest`] for a live camera, `input.live`), so a stream that stops sending does not
/// keep a shutdown from being honoured.
pub fn open_with(spec: &str, options: &InputConfig) -> Result<Box<dyn FrameSource>, SourceError> {
    if spec == "-" {
        let stream = Stream::open("stdin", Box::new(io::stdin()), options)?;
        return Ok(stream_source(Box::new(stream), options));
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
    let kind = meta.file_type();
    let stream = kind.is_fifo() || kind.is_char_device();
    let image = has_extension(path, IMAGE_EXTENSIONS);
    let stream_file = if options.format.is_raw() {
        !image
    } else {
        has_extension(path, &["y4m"])
    };
    if stream || stream_file {
        let file = File::open(path).map_err(|source| SourceError::Open {
            spec: spec.to_string(),
            source,
        })?;
        let name = path
            .file_name()
            .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned());
        let source = Stream::open(&name, Box::new(file), options)?;
        if stream {
            return Ok(stream_source(Box::new(source), options));
        }
        return Ok(Box::new(source));
    }
    if image {
        return Ok(Box::new(Folder::from_files(
            spec,
            std::iter::once(path.to_path_buf()),
            options,
        )?));
    }
    Err(SourceError::Unsupported {
        spec: spec.to_string(),
        reason: "expected '-' (y4m on stdin), a directory of .jpg/.jpeg/.png images, a .y4m \
                 file or FIFO, an image file, or image files separated by commas (or set \
                 input.format for raw frames)"
            .to_string(),
    })
}

/// A stream (stdin, a FIFO, a device) on its own thread: the newest frame of a live camera
/// (`input.live`), else every frame in order.
fn stream_source(stream: Box<dyn FrameSource>, options: &InputConfig) -> Box<dyn FrameSource> {
    if options.live {
        Box::new(latest::Latest::new(stream))
    } else {
        Box::new(threaded::Prefetch::new(stream, None))
    }
}

/// File name endings read as images.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

fn has_extension(path: &Path, wanted: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| wanted.iter().any(|w| e.eq_ignore_ascii_case(w)))
}

#[cfg(test)]
mod tests {
    //! Tests of the spec dispatch, and the fixtures the submodules' tests share.

    use super::*;

    /// Builds a YUV4MPEG2 stream: the header line, then each frame after a FRAME line.
    pub(super) fn stream(header: &str, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("{header}\n").into_bytes();
        for f in frames {
            out.extend_from_slice(b"FRAME\n");
            out.extend_from_slice(f);
        }
        out
    }

    pub(super) use crate::util::testing::TempDir;

    /// A PNG file's bytes.
    pub(super) fn png(w: u32, h: u32, data: &[u8], ct: image::ExtendedColorType) -> Vec<u8> {
        use image::ImageEncoder;
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(data, w, h, ct)
            .unwrap();
        out
    }

    fn raw(format: InputFormat, width: u32, height: u32) -> InputConfig {
        InputConfig {
            format,
            width,
            height,
            ..InputConfig::default()
        }
    }

    #[test]
    fn raw_layout_validation_names_the_key() {
        assert_eq!(InputConfig::default().validate(), Ok(()));
        assert_eq!(raw(InputFormat::Nv12, 640, 360).validate(), Ok(()));
        // Width and height are ignored for y4m.
        assert_eq!(raw(InputFormat::Y4m, 0, 99_999).validate(), Ok(()));
        for (format, w, h, key, wanted) in [
            (
                InputFormat::Nv12,
                0,
                360,
                "width",
                "must be set (1..=16384) when input.format is \"nv12\", got 0",
            ),
            (
                InputFormat::I420,
                640,
                0,
                "height",
                "must be set (1..=16384) when input.format is \"i420\", got 0",
            ),
            (InputFormat::Rgb24, 16385, 8, "width", "got 16385"),
            (
                InputFormat::Nv12,
                8000,
                8000,
                "max_pixels",
                "8000x8000 = 64000000 pixels are over the limit of 33177600",
            ),
        ] {
            let e = raw(format, w, h).validate().unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(wanted), "{e}");
        }

        // Through the config file: dotted keys, the format spelled in lower case.
        use crate::config::{Config, ConfigError};
        for (text, key) in [
            ("[input]\nformat = \"nv12\"\n", "input.width"),
            ("[input]\nformat = \"i420\"\nwidth = 64\n", "input.height"),
            ("[input]\nformat = \"yuyv\"\n", "input.format"),
            ("[input]\nformat = \"NV12\"\n", "input.format"),
            (
                "[input]\nformat = \"rgb24\"\nwidth = 64\nheight = 64\nmax_pixels = 100\n",
                "input.max_pixels",
            ),
        ] {
            match Config::parse(text) {
                Err(ConfigError::Invalid { error, .. }) => assert_eq!(error.key, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let c = Config::parse("[input]\nformat = \"rgb24\"\nwidth = 3\nheight = 2\n").unwrap();
        assert_eq!(c.input.format, InputFormat::Rgb24);
        assert!(!c.input.full_range);
        assert!(Config::default().to_toml().contains("\nformat = \"y4m\"\n"));
    }

    #[test]
    fn a_raw_format_reads_every_stream_spec_as_raw_frames_and_leaves_images_alone() {
        let dir = TempDir::new("open-raw");
        let options = InputConfig {
            min_width: 1,
            min_height: 1,
            ..raw(InputFormat::Rgb24, 2, 1)
        };
        // A .y4m name and any other file name: raw RGB24 frames (here two).
        for name in ["cam.y4m", "cam.bin", "cam"] {
            let p = dir.0.join(name);
            fs::write(&p, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).unwrap();
            let mut src = open_with(p.to_str().unwrap(), &options).unwrap();
            assert_eq!(src.describe(), format!("raw {name} 2x1 rgb24 @15fps"));
            assert_eq!(src.frame_size(), Some((2, 1)));
            let mut f = Frame::new();
            src.next_frame(&mut f).unwrap().unwrap();
            assert_eq!(f.rgb, [1, 2, 3, 4, 5, 6]);
            src.next_frame(&mut f).unwrap().unwrap();
            assert_eq!((f.name.as_str(), f.time_ms), (&*format!("{name}#1"), 66));
            assert_eq!(f.rgb, [7, 8, 9, 10, 11, 12]);
            assert!(src.next_frame(&mut f).is_none());
        }
        // An image file, a folder and a list are still images.
        let img = dir.0.join("a.png");
        let rgb = [9, 8, 7, 6, 5, 4, 3, 2, 1];
        fs::write(&img, png(3, 1, &rgb, image::ExtendedColorType::Rgb8)).unwrap();
        for spec in [
            img.to_str().unwrap().to_string(),
            format!("{},{}", img.display(), img.display()),
        ] {
            let mut src = open_with(&spec, &options).unwrap();
            let mut f = Frame::new();
            src.next_frame(&mut f).unwrap().unwrap();
            assert_eq!((f.width, f.rgb.as_slice()), (3, &rgb[..]), "{spec}");
        }
        let images = dir.0.join("images");
        fs::create_dir(&images).unwrap();
        fs::copy(&img, images.join("b.png")).unwrap();
        let src = open_with(images.to_str().unwrap(), &options).unwrap();
        assert_eq!(src.len_hint(), Some(1));

        // A raw format without a size is refused when opening, naming the key.
        let e = open_with(
            dir.0.join("cam").to_str().unwrap(),
            &raw(InputFormat::Nv12, 0, 0),
        )
        .err()
        .unwrap();
        assert!(matches!(e, SourceError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("input.width: must be set"), "{e}");
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
