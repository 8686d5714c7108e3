//! `application/grpc-web-text` request bodies: base64, decoded as they arrive (a group of
//! four characters may be split across frames).

use super::*;

/// A base64 request body (`-text`) decoded.
pub(super) struct TextRequestBody {
    inner: Body,
    /// Characters of an incomplete group of four, carried to the next frame.
    carry: Vec<u8>,
    /// Set once the body has ended or failed.
    done: bool,
}

impl TextRequestBody {
    pub(super) fn new(inner: Body) -> Self {
        Self {
            inner,
            carry: Vec::new(),
            done: false,
        }
    }

    /// Decodes the whole groups of four characters of `carry` and `text`, carrying the rest.
    fn decode(&mut self, text: &[u8]) -> Result<Bytes, Status> {
        self.carry
            .extend(text.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        let whole = self.carry.len() / 4 * 4;
        let decoded = decode_groups(&self.carry[..whole])?;
        self.carry.drain(..whole);
        Ok(decoded)
    }
}

/// Decodes groups of four base64 characters; a padded group may end a chunk anywhere, as
/// when a client sends its messages as separate padded chunks.
pub(super) fn decode_groups(text: &[u8]) -> Result<Bytes, Status> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut start = 0;
    for (index, group) in text.chunks(4).enumerate() {
        let end = (index + 1) * 4;
        if group.contains(&b'=') || end == text.len() {
            STANDARD
                .decode_vec(&text[start..end.min(text.len())], &mut out)
                .map_err(|err| {
                    Status::invalid_argument(format!(
                        "the request body is not base64, as content-type application/grpc-web-text says it is: {err}"
                    ))
                })?;
            start = end;
        }
    }
    Ok(Bytes::from(out))
}

impl HttpBody for TextRequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame<Status> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    this.done = true;
                    if this.carry.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(Status::invalid_argument(
                        "the request body ends in the middle of a base64 group of four characters",
                    ))));
                }
            };
            // Trailers of a request are ignored, as native gRPC ignores them.
            let Ok(text) = frame.into_data() else {
                continue;
            };
            match this.decode(&text) {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(status) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
