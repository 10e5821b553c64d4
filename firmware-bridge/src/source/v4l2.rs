//! V4L2 cameras (`/dev/videoN`: USB webcams, the Pi's CSI cameras through their
//! V4L2 driver) through the `v4l` crate: memory-mapped buffers, MJPEG passed on as
//! it comes, YUYV (4:2:2) compressed to JPEG by libjpeg-turbo straight from its
//! planes (no RGB pass), so every frame enters the pipeline as JPEG like the other
//! sources' (motion thumbnails at 1/8 scale, snapshots as they are).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use v4l::buffer::Type;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{Backoff, Frame, SourceEvents, Stop};
use crate::config::{V4l2Config, V4l2Format};

const MJPG: &[u8; 4] = b"MJPG";
const YUYV: &[u8; 4] = b"YUYV";
/// JPEG quality for frames compressed here from YUYV.
const QUALITY: i32 = 90;

/// Capture from the device, reopening it with backoff when it fails or vanishes
/// (a USB camera unplugged and plugged in again).
pub fn run(camera: &str, cfg: &V4l2Config, events: &mut dyn SourceEvents, stop: &Stop) {
    let mut backoff = Backoff::default();
    while !stop.is_stopped() {
        let started = Instant::now();
        let reason = match capture(camera, cfg, events, stop) {
            Ok(()) => return, // stopped
            Err(e) => format!("{}: {e}", cfg.device.display()),
        };
        if stop.is_stopped() {
            return;
        }
        let delay = backoff.delay(started.elapsed());
        events.failed(&format!("{reason}; reopening in {:.1} s", delay.as_secs_f64()));
        if !stop.sleep(delay) {
            return;
        }
    }
}

/// What was agreed with the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub yuyv: bool,
    /// YUV in 0-255 (JPEG's range) rather than video's 16-235 / 16-240.
    pub full_range: bool,
}

fn open(cfg: &V4l2Config) -> Result<(Device, Negotiated), String> {
    let dev = Device::with_path(&cfg.device).map_err(|e| format!("cannot open: {e}"))?;
    let offered: Vec<FourCC> = dev
        .enum_formats()
        .map_err(|e| format!("not a capture device: {e}"))?
        .iter()
        .map(|d| d.fourcc)
        .collect();
    let want = pick_format(cfg.format, &offered).ok_or_else(|| {
        let names: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
        format!(
            "offers {} but owlet reads MJPEG or YUYV (format = {:?})",
            names.join(", "),
            cfg.format
        )
    })?;
    let mut fmt = dev.format().map_err(|e| e.to_string())?;
    fmt.width = cfg.width;
    fmt.height = cfg.height;
    fmt.fourcc = FourCC::new(want);
    let got = dev.set_format(&fmt).map_err(|e| {
        format!("cannot set {}x{} {}: {e}", cfg.width, cfg.height, FourCC::new(want))
    })?;
    if got.fourcc != FourCC::new(want) {
        return Err(format!("asked for {} and the driver chose {}", FourCC::new(want), got.fourcc));
    }
    if got.width != cfg.width || got.height != cfg.height {
        log::info!(
            "{}: the driver chose {}x{} for {}x{}",
            cfg.device.display(),
            got.width,
            got.height,
            cfg.width,
            cfg.height
        );
    }
    // Not every driver can set a frame rate; the frames then come as fast as it sends.
    if let Err(e) = dev.set_params(&v4l::video::capture::Parameters::with_fps(cfg.fps)) {
        log::warn!("{}: cannot set {} frames/s: {e}", cfg.device.display(), cfg.fps);
    }
    let yuyv = want == YUYV;
    // YUYV is limited range unless the driver says otherwise (V4L2's default for
    // Y'CbCr encodings); JPEG's YCbCr is full range.
    let full_range = matches!(got.quantization, v4l::format::Quantization::FullRange);
    Ok((
        dev,
        Negotiated {
            width: got.width,
            height: got.height,
            stride: got.stride.max(got.width * 2),
            yuyv,
            full_range,
        },
    ))
}

fn pick_format(format: V4l2Format, offered: &[FourCC]) -> Option<&'static [u8; 4]> {
    let has = |f: &[u8; 4]| offered.contains(&FourCC::new(f));
    match format {
        V4l2Format::Mjpeg => has(MJPG).then_some(MJPG),
        V4l2Format::Yuyv => has(YUYV).then_some(YUYV),
        // MJPEG first: the camera compressed it already, which saves the Pi the work.
        V4l2Format::Auto => [MJPG, YUYV].into_iter().find(|f| has(f)),
    }
}

fn capture(
    camera: &str,
    cfg: &V4l2Config,
    events: &mut dyn SourceEvents,
    stop: &Stop,
) -> Result<(), String> {
    let (dev, n) = open(cfg)?;
    log::info!(
        "camera {camera}: {} streaming {}x{} {}",
        cfg.device.display(),
        n.width,
        n.height,
        if n.yuyv { "YUYV" } else { "MJPEG" }
    );
    let mut stream = MmapStream::with_buffers(&dev, Type::VideoCapture, 4)
        .map_err(|e| format!("cannot map buffers: {e}"))?;
    // Wake up now and then to see the stop flag, and notice a camera gone silent.
    stream.set_timeout(Duration::from_secs(2));
    let mut silent_since = Instant::now();
    let mut count = 0u64;
    while !stop.is_stopped() {
        let (buf, meta) = match stream.next() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                if silent_since.elapsed() > Duration::from_secs(10) {
                    return Err("no frame for 10 s".into());
                }
                continue;
            }
            Err(e) => return Err(format!("capture failed: {e}")),
        };
        silent_since = Instant::now();
        let data = &buf[..(meta.bytesused as usize).min(buf.len())];
        count += 1;
        let bytes = if n.yuyv {
            match yuyv_to_jpeg(data, n.width, n.height, n.stride, n.full_range) {
                Ok(b) => b,
                Err(e) => {
                    events.failed(&format!("{}: frame {count}: {e}", cfg.device.display()));
                    continue;
                }
            }
        } else {
            data.to_vec()
        };
        let origin = format!("{}#{count}", cfg.device.display());
        if !events.frame(Frame {
            camera: camera.into(),
            origin,
            captured: SystemTime::now(),
            bytes,
            event_id: None,
        }) {
            return Ok(());
        }
    }
    Ok(())
}

/// Packed YUYV 4:2:2 (Y0 U Y1 V per two pixels, rows `stride` bytes apart) to JPEG.
/// libjpeg-turbo compresses from Y, U and V planes, so this only de-interleaves
/// (and stretches limited-range video levels to JPEG's full range, by table).
pub fn yuyv_to_jpeg(
    data: &[u8],
    width: u32,
    height: u32,
    stride: u32,
    full_range: bool,
) -> Result<Vec<u8>, String> {
    let (w, h, stride) = (width as usize, height as usize, stride as usize);
    if w == 0 || h == 0 || w % 2 != 0 {
        return Err(format!(
            "YUYV frame of {w}x{h}: the width must be even and nothing may be zero"
        ));
    }
    if stride < 2 * w || data.len() < stride * (h - 1) + 2 * w {
        return Err(format!(
            "YUYV frame of {w}x{h} needs {} bytes, got {}",
            stride * (h - 1) + 2 * w,
            data.len()
        ));
    }
    let (ly, lc) = if full_range { (identity(), identity()) } else { range_tables() };
    let cw = w / 2;
    let mut planes = vec![0u8; w * h + 2 * cw * h];
    let (y, uv) = planes.split_at_mut(w * h);
    let (u, v) = uv.split_at_mut(cw * h);
    for row in 0..h {
        let src = &data[row * stride..row * stride + 2 * w];
        for (i, px) in src.chunks_exact(4).enumerate() {
            y[row * w + 2 * i] = ly[px[0] as usize];
            u[row * cw + i] = lc[px[1] as usize];
            y[row * w + 2 * i + 1] = ly[px[2] as usize];
            v[row * cw + i] = lc[px[3] as usize];
        }
    }
    let image = turbojpeg::YuvImage {
        pixels: &planes[..],
        width: w,
        align: 1,
        height: h,
        subsamp: turbojpeg::Subsamp::Sub2x1,
    };
    let mut c = turbojpeg::Compressor::new().map_err(|e| e.to_string())?;
    c.set_quality(QUALITY).map_err(|e| e.to_string())?;
    c.compress_yuv_to_vec(image).map_err(|e| format!("JPEG compression failed: {e}"))
}

fn identity() -> [u8; 256] {
    std::array::from_fn(|i| i as u8)
}

/// Limited-range luma (16-235) and chroma (16-240 around 128) to 0-255.
fn range_tables() -> ([u8; 256], [u8; 256]) {
    let y = std::array::from_fn(|i| {
        ((i as f32 - 16.0) * 255.0 / 219.0).round().clamp(0.0, 255.0) as u8
    });
    let c = std::array::from_fn(|i| {
        ((i as f32 - 128.0) * 255.0 / 224.0 + 128.0).round().clamp(0.0, 255.0) as u8
    });
    (y, c)
}

/// For --check-config: the device exists and is a character device.
pub fn check(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_char_device() {
        return Err(format!("{} is not a device", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_mjpeg_and_an_explicit_format_must_be_offered() {
        let both = [FourCC::new(YUYV), FourCC::new(MJPG)];
        let yuyv_only = [FourCC::new(YUYV)];
        assert_eq!(pick_format(V4l2Format::Auto, &both), Some(MJPG));
        assert_eq!(pick_format(V4l2Format::Auto, &yuyv_only), Some(YUYV));
        assert_eq!(pick_format(V4l2Format::Mjpeg, &yuyv_only), None);
        assert_eq!(pick_format(V4l2Format::Yuyv, &both), Some(YUYV));
        assert_eq!(pick_format(V4l2Format::Auto, &[FourCC::new(b"H264")]), None);
    }

    #[test]
    fn short_odd_or_empty_yuyv_frames_are_errors_not_panics() {
        assert!(yuyv_to_jpeg(&[0; 10], 4, 2, 8, false).unwrap_err().contains("needs 16 bytes"));
        assert!(yuyv_to_jpeg(&[0; 64], 3, 2, 6, false).unwrap_err().contains("even"));
        assert!(yuyv_to_jpeg(&[], 0, 0, 0, false).is_err());
        assert!(yuyv_to_jpeg(&[0; 16], 4, 2, 4, false).unwrap_err().contains("needs"));
    }

    #[test]
    fn limited_range_levels_stretch_to_full_range() {
        let (y, c) = range_tables();
        assert_eq!((y[16], y[235], y[0], y[255]), (0, 255, 0, 255));
        assert!(c[16] <= 1 && c[128] == 128 && c[240] == 255, "{} {} {}", c[16], c[128], c[240]);
    }

    #[test]
    fn a_missing_device_is_named() {
        assert!(check(Path::new("/dev/video-owlet-none"))
            .unwrap_err()
            .contains("/dev/video-owlet-none"));
        assert!(check(Path::new("/")).unwrap_err().contains("not a device"));
    }
}
