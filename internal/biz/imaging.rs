//! Placeholder until the pipeline lands; same API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat { Jpeg, Png, Webp, Gif }
impl ImageFormat { pub fn mime(self) -> &'static str { match self { ImageFormat::Jpeg => "image/jpeg", ImageFormat::Png => "image/png", ImageFormat::Webp => "image/webp", ImageFormat::Gif => "image/gif" } } }
pub struct Limits { pub max_pixels: u64, pub thumbnail_size: u32 }
pub struct CleanImage { pub format: ImageFormat, pub width: u32, pub height: u32, pub bytes: Vec<u8>, pub thumbnail: Vec<u8>, pub thumbnail_width: u32, pub thumbnail_height: u32 }
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error("unsupported image type")] Unsupported,
    #[error("image is {width}x{height} pixels, above the limit of {max} pixels")] TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("image could not be decoded: {0}")] Corrupt(String),
}
pub fn process(_bytes: &[u8], _limits: &Limits) -> Result<CleanImage, ImagingError> { Err(ImagingError::Unsupported) }
