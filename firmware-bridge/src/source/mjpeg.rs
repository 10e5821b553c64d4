//! Splitting a byte stream into JPEG frames: what `rpicam-vid --codec mjpeg -o -`,
//! `ffmpeg -f mjpeg -` and an HTTP multipart/x-mixed-replace body all are.
//!
//! The splitter walks JPEG markers rather than searching for FF D9: an EXIF
//! thumbnail inside APP1 has its own FF D9, and entropy-coded data never holds a
//! bare marker (FF is stuffed as FF 00). Anything between frames (multipart
//! boundaries and headers, garbage) is skipped and counted. A frame over the size
//! limit is discarded and the stream resynchronised at the next start of image.

/// Largest frame accepted by default: a 4K JPEG at high quality is ~3 MB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

pub struct JpegSplitter {
    buf: Vec<u8>,
    /// Where scanning resumes in `buf` (inside the current frame), so a frame that
    /// arrives in many reads is scanned once.
    pos: usize,
    in_frame: bool,
    in_entropy: bool,
    max_frame: usize,
    /// Bytes skipped outside frames or in discarded ones.
    pub skipped: u64,
    /// Frames discarded for being over the limit or malformed.
    pub discarded: u64,
}

impl JpegSplitter {
    pub fn new(max_frame: usize) -> JpegSplitter {
        JpegSplitter {
            buf: Vec::new(),
            pos: 0,
            in_frame: false,
            in_entropy: false,
            max_frame,
            skipped: 0,
            discarded: 0,
        }
    }

    /// Feed bytes; returns the frames they completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        loop {
            if !self.in_frame {
                match find_soi(&self.buf) {
                    Some(i) => {
                        self.skipped += i as u64;
                        self.buf.drain(..i);
                        self.in_frame = true;
                        self.in_entropy = false;
                        self.pos = 2;
                    }
                    None => {
                        // Keep a trailing FF or FF D8: the start of an SOI cut by a read.
                        let keep = if self.buf.ends_with(&[0xFF, 0xD8]) {
                            2
                        } else {
                            usize::from(self.buf.last() == Some(&0xFF))
                        };
                        self.skipped += (self.buf.len() - keep) as u64;
                        self.buf.drain(..self.buf.len() - keep);
                        return frames;
                    }
                }
            }
            match self.scan() {
                Scan::NeedMore => {
                    if self.buf.len() > self.max_frame {
                        self.resync();
                        continue;
                    }
                    return frames;
                }
                Scan::Done(end) => {
                    if end > self.max_frame {
                        self.skipped += end as u64;
                        self.discarded += 1;
                        self.buf.drain(..end);
                    } else {
                        frames.push(self.buf.drain(..end).collect());
                    }
                    self.in_frame = false;
                }
                Scan::Malformed => self.resync(),
            }
        }
    }

    /// Drop the current frame's start of image and look for the next one.
    fn resync(&mut self) {
        self.discarded += 1;
        self.skipped += 2;
        self.buf.drain(..2);
        self.in_frame = false;
    }

    fn scan(&mut self) -> Scan {
        let b = &self.buf;
        loop {
            if self.in_entropy {
                // Entropy-coded data ends at the first FF not followed by 00, a
                // restart marker (D0-D7) or fill (FF).
                loop {
                    if self.pos >= b.len() {
                        return Scan::NeedMore;
                    }
                    let Some(off) = b[self.pos..].iter().position(|&x| x == 0xFF) else {
                        self.pos = b.len();
                        return Scan::NeedMore;
                    };
                    let i = self.pos + off;
                    let Some(&next) = b.get(i + 1) else {
                        self.pos = i;
                        return Scan::NeedMore;
                    };
                    if next == 0x00 || (0xD0..=0xD7).contains(&next) || next == 0xFF {
                        self.pos = i + if next == 0xFF { 1 } else { 2 };
                        continue;
                    }
                    self.pos = i;
                    self.in_entropy = false;
                    break;
                }
            }
            // At a marker.
            let Some(&ff) = b.get(self.pos) else { return Scan::NeedMore };
            if ff != 0xFF {
                return Scan::Malformed;
            }
            let Some(&m) = b.get(self.pos + 1) else { return Scan::NeedMore };
            match m {
                0xFF => self.pos += 1, // fill byte
                0xD9 => return Scan::Done(self.pos + 2),
                0xD8 => return Scan::Malformed, // a new image inside this one
                0x01 | 0xD0..=0xD7 => self.pos += 2,
                0x00 => return Scan::Malformed,
                _ => {
                    let Some(len) = b.get(self.pos + 2..self.pos + 4) else {
                        return Scan::NeedMore;
                    };
                    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                    if len < 2 {
                        return Scan::Malformed;
                    }
                    self.pos += 2 + len;
                    if m == 0xDA {
                        self.in_entropy = true;
                    }
                    if self.pos > b.len() {
                        // Wait for the segment; scanning resumes after it.
                        return Scan::NeedMore;
                    }
                }
            }
        }
    }
}

enum Scan {
    NeedMore,
    Done(usize),
    Malformed,
}

fn find_soi(b: &[u8]) -> Option<usize> {
    b.windows(3).position(|w| w[0] == 0xFF && w[1] == 0xD8 && w[2] == 0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real JPEG, with a fake EXIF thumbnail (its own SOI/EOI) in APP1.
    fn jpeg(seed: u8, with_thumbnail: bool) -> Vec<u8> {
        let img = image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x as u8).wrapping_mul(seed), y as u8 * 7, seed])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        if with_thumbnail {
            let thumb = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x02, 0xFF, 0xD9];
            let mut app1 = vec![0xFF, 0xE1];
            app1.extend_from_slice(&((2 + 6 + thumb.len()) as u16).to_be_bytes());
            app1.extend_from_slice(b"Exif\0\0");
            app1.extend_from_slice(&thumb);
            out.splice(2..2, app1);
        }
        out
    }

    fn split_in_chunks(stream: &[u8], chunk: usize, max: usize) -> (Vec<Vec<u8>>, JpegSplitter) {
        let mut s = JpegSplitter::new(max);
        let mut frames = Vec::new();
        for c in stream.chunks(chunk.max(1)) {
            frames.extend(s.push(c));
        }
        (frames, s)
    }

    #[test]
    fn frames_come_out_whole_whatever_the_read_sizes_and_garbage_between() {
        let a = jpeg(3, true);
        let b = jpeg(5, false);
        let mut stream = b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        stream.extend_from_slice(&a);
        stream.extend_from_slice(b"\r\n--boundary\r\n\r\n\xff\xff");
        stream.extend_from_slice(&b);
        stream.extend_from_slice(&a);
        for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let (frames, _) = split_in_chunks(&stream, chunk, DEFAULT_MAX_FRAME);
            assert_eq!(frames, vec![a.clone(), b.clone(), a.clone()], "chunk {chunk}");
        }
        for f in [&a, &b] {
            image::load_from_memory(f).unwrap();
        }
    }

    #[test]
    fn a_truncated_frame_is_dropped_and_the_next_one_found() {
        let a = jpeg(3, false);
        let b = jpeg(9, false);
        let mut stream = a[..a.len() / 2].to_vec(); // cut in its entropy data
        stream.extend_from_slice(&b);
        let (frames, s) = split_in_chunks(&stream, 17, DEFAULT_MAX_FRAME);
        // The cut frame's entropy data runs into b's SOI: a marker where none may be.
        assert_eq!(frames, vec![b]);
        assert_eq!(s.discarded, 1);
    }

    #[test]
    fn an_oversized_frame_is_discarded_without_holding_its_bytes() {
        let a = jpeg(3, false);
        let small = a.len() - 1;
        let mut stream = a.clone();
        stream.extend_from_slice(&a);
        let (frames, s) = split_in_chunks(&stream, 100, small);
        assert!(frames.is_empty());
        assert!(s.discarded >= 2 && s.buf.len() <= small + 100);
    }

    #[test]
    fn random_garbage_never_panics_and_never_yields_a_frame_without_soi_and_eoi() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let n = rng.random_range(0..4000);
            let mut v: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            if rng.random_bool(0.5) {
                let j = jpeg(rng.random(), rng.random());
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, j);
            }
            let (frames, _) = split_in_chunks(&v, rng.random_range(1..300), 1 << 20);
            for f in frames {
                assert!(f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9]));
            }
        }
    }
}
