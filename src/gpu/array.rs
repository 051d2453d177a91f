//! Device-resident float32 arrays: upload and download.

use std::sync::{mpsc, Arc};

use ndarray::{ArrayD, ArrayView, Dimension, IxDyn};

use super::device::{ErrorScope, Gpu, Inner};
use crate::cpu::Interrupt;
use crate::error::Error;

/// A float32 array on a GPU device, C-contiguous, stored as one or more storage buffers of at
/// most the device's binding size (so arrays larger than one binding work everywhere).
///
/// Arrays are immutable: the loss functions read them and return new ones. Cloning is cheap
/// (the clone shares the buffers).
#[derive(Clone)]
pub struct GpuArray {
    pub(crate) gpu: Gpu,
    pub(crate) shape: Vec<usize>,
    /// Buffers of `gpu.inner.chunk` elements each, the last one shorter; none when empty.
    pub(crate) chunks: Arc<Buffers>,
}

/// An array's buffers; when the last array holding them goes, they go back to the device's
/// pool for later results (allocating device memory costs far more than the kernels).
pub(crate) struct Buffers {
    gpu: Gpu,
    list: Vec<wgpu::Buffer>,
}

impl core::ops::Deref for Buffers {
    type Target = [wgpu::Buffer];

    fn deref(&self) -> &[wgpu::Buffer] {
        &self.list
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        let list = core::mem::take(&mut self.list);
        if self.gpu.inner.check_process().is_err() {
            // A forked child: the device must not be touched, not even to free a buffer.
            std::mem::forget(list);
        } else {
            self.gpu.inner.recycle(list);
        }
    }
}

impl core::fmt::Debug for GpuArray {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GpuArray")
            .field("shape", &self.shape)
            .field("buffers", &self.chunks.len())
            .field("device", &self.gpu)
            .finish()
    }
}

/// The element counts of the buffers of an array of `n` elements.
fn chunk_lens(n: usize, chunk: usize) -> impl Iterator<Item = usize> {
    let chunk = chunk.max(1);
    (0..n.div_ceil(chunk)).map(move |c| chunk.min(n - c * chunk))
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A buffer holding `data`, written through a mapping at creation.
pub(crate) fn buffer_with(
    inner: &Inner,
    label: &str,
    data: &[u8],
    usage: wgpu::BufferUsages,
) -> Result<wgpu::Buffer, Error> {
    let size = (data.len() as u64).div_ceil(4).max(1) * 4;
    let buffer = inner.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: true,
    })?;
    {
        let mut view = buffer
            .get_mapped_range_mut(..)
            .map_err(|e| Error::Gpu(format!("could not write a buffer of {size} bytes: {e}")))?;
        // `size` is `data.len()` rounded up to 4: at most 3 bytes of padding.
        let (body, padding) = (
            data.len().min(view.len()),
            view.len() - data.len().min(view.len()),
        );
        view.slice(..body)
            .copy_from_slice(data.get(..body).unwrap_or_default());
        view.slice(body..)
            .copy_from_slice(&[0u8; 4][..padding.min(4)]);
    }
    buffer.unmap();
    Ok(buffer)
}

/// Waits for the work submitted so far, calling `interrupt` every 50 ms meanwhile.
pub(crate) fn wait(inner: &Inner, interrupt: Interrupt<'_>) -> Result<(), Error> {
    let step = std::time::Duration::from_millis(50);
    loop {
        let poll = inner.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: interrupt.map(|_| step),
        });
        match poll {
            Ok(_) => return Ok(()),
            Err(wgpu::PollError::Timeout) => {
                if let Some(check) = interrupt {
                    check()?;
                }
            }
            Err(e) => return Err(Error::Gpu(format!("waiting for the GPU failed: {e}"))),
        }
    }
}

/// Copies `sources` (buffer, byte offset, bytes) to the host: one submission, one wait, during
/// which `interrupt` is called every 50 ms.
pub(crate) fn read_back(
    inner: &Inner,
    encoder: wgpu::CommandEncoder,
    sources: &[(&wgpu::Buffer, u64, u64)],
    interrupt: Interrupt<'_>,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut encoder = encoder;
    let mut staging = Vec::with_capacity(sources.len());
    for &(buffer, offset, size) in sources {
        let size = size.div_ceil(4).max(1) * 4;
        let s = inner.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bcers read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })?;
        encoder.copy_buffer_to_buffer(buffer, offset, &s, 0, size);
        staging.push(s);
    }
    inner.queue.submit([encoder.finish()]);
    wait(inner, interrupt)?;
    let (tx, rx) = mpsc::channel();
    for (i, s) in staging.iter().enumerate() {
        let tx = tx.clone();
        s.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let mut ok = vec![false; staging.len()];
    let mut pending = staging.len();
    let mut idle = 0;
    while pending > 0 && idle < 100 {
        inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        // Another thread's poll may be the one running the callbacks: wait for them a little.
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok((i, r)) => {
                pending -= 1;
                if let (Some(slot), true) = (ok.get_mut(i), r.is_ok()) {
                    *slot = true;
                }
            }
            // The work is done (the poll waited for it) but a callback has not run: give up
            // after 5 s of that.
            Err(mpsc::RecvTimeoutError::Timeout) => idle += 1,
            // Every callback has run or been dropped.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if !ok.iter().all(|&b| b) {
        return Err(Error::Gpu(inner.uncaptured().unwrap_or_else(|| {
            "reading a result back from the GPU failed".to_owned()
        })));
    }
    let mut out = Vec::with_capacity(staging.len());
    for (s, &(_, _, size)) in staging.iter().zip(sources) {
        let view = s
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading a result back from the GPU failed: {e}")))?;
        let bytes = view.get(..size as usize).unwrap_or(&view);
        let mut copy = Vec::new();
        copy.try_reserve_exact(bytes.len())
            .map_err(|_| Error::OutOfMemory {
                what: "a result read back from the GPU",
                bytes: bytes.len() as u64,
            })?;
        copy.extend_from_slice(bytes);
        out.push(copy);
        drop(view);
        s.unmap();
    }
    Ok(out)
}

impl GpuArray {
    /// Uploads `view` (any layout; read in logical order) to `gpu`.
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device cannot hold it.
    pub fn from_view<D: Dimension>(gpu: &Gpu, view: ArrayView<'_, f32, D>) -> Result<Self, Error> {
        let inner = &gpu.inner;
        inner.check_process()?;
        let shape = view.shape().to_vec();
        let n = view.len();
        let scope = ErrorScope::push(&inner.device);
        let mut chunks = Vec::with_capacity(n.div_ceil(inner.chunk.max(1)));
        let result = (|| {
            if let Some(slice) = view.as_slice() {
                for part in slice.chunks(inner.chunk.max(1)) {
                    chunks.push(buffer_with(
                        inner,
                        "bcers array",
                        bytemuck::cast_slice(part),
                        USAGE,
                    )?);
                }
            } else {
                let mut it = view.iter();
                let mut part: Vec<f32> = Vec::new();
                for len in chunk_lens(n, inner.chunk) {
                    part.clear();
                    part.try_reserve_exact(len)
                        .map_err(|_| Error::OutOfMemory {
                            what: "an upload to the GPU",
                            bytes: len as u64 * 4,
                        })?;
                    part.extend(it.by_ref().take(len).copied());
                    chunks.push(buffer_with(
                        inner,
                        "bcers array",
                        bytemuck::cast_slice(&part),
                        USAGE,
                    )?);
                }
            }
            Ok(())
        })();
        scope.pop(inner)?;
        result?;
        Ok(GpuArray::new(gpu, shape, chunks))
    }

    fn new(gpu: &Gpu, shape: Vec<usize>, list: Vec<wgpu::Buffer>) -> Self {
        GpuArray {
            gpu: gpu.clone(),
            shape,
            chunks: Arc::new(Buffers {
                gpu: gpu.clone(),
                list,
            }),
        }
    }

    /// An array of `shape` for the kernels to write every element of: its buffers come from
    /// the device's pool where it has some of the right size (their contents are stale).
    pub(crate) fn output(gpu: &Gpu, shape: &[usize]) -> Result<Self, Error> {
        let inner = &gpu.inner;
        let n: usize = shape.iter().product();
        let list = chunk_lens(n, inner.chunk)
            .map(|len| {
                let size = (len as u64 * 4).max(4);
                match inner.reuse(size) {
                    Some(buffer) => Ok(buffer),
                    None => inner.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("bcers result"),
                        size,
                        usage: USAGE,
                        mapped_at_creation: false,
                    }),
                }
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(GpuArray::new(gpu, shape.to_vec(), list))
    }

    /// The same elements in the shape `shape` (C order; the element count must not change).
    #[cfg(feature = "python")]
    pub(crate) fn reshaped(mut self, shape: Vec<usize>) -> Result<Self, Error> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::Gpu(format!(
                "cannot give an array of {} elements the shape {}",
                self.len(),
                crate::error::Shape(&shape)
            )));
        }
        self.shape = shape;
        Ok(self)
    }

    /// Element `index` (C order) of the array, downloaded.
    pub(crate) fn element(&self, index: u64) -> Result<f32, Error> {
        let inner = &self.gpu.inner;
        let chunk = inner.chunk.max(1) as u64;
        let buffer = usize::try_from(index / chunk)
            .ok()
            .and_then(|c| self.chunks.get(c))
            .ok_or_else(|| Error::Gpu("an element index past the array's end".to_owned()))?;
        let encoder = inner
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bcers element"),
            });
        let bytes = read_back(inner, encoder, &[(buffer, (index % chunk) * 4, 4)], None)?;
        let word = bytes
            .first()
            .and_then(|b| b.get(..4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or_else(|| Error::Gpu("reading an element back from the GPU failed".to_owned()))?;
        Ok(f32::from_le_bytes(word))
    }

    /// Downloads the array.
    ///
    /// # Errors
    /// [`Error::Gpu`] when the transfer fails.
    pub fn to_array(&self) -> Result<ArrayD<f32>, Error> {
        let inner = &self.gpu.inner;
        inner.check_process()?;
        let n = self.len();
        let mut data = Vec::new();
        data.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
            what: "a download from the GPU",
            bytes: n as u64 * 4,
        })?;
        if n > 0 {
            let scope = ErrorScope::push(&inner.device);
            let encoder = inner
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("bcers download"),
                });
            let sources: Vec<(&wgpu::Buffer, u64, u64)> = self
                .chunks
                .iter()
                .zip(chunk_lens(n, inner.chunk))
                .map(|(b, len)| (b, 0, len as u64 * 4))
                .collect();
            let bytes = read_back(inner, encoder, &sources, None);
            scope.pop(inner)?;
            for part in bytes? {
                data.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&part));
            }
        }
        ArrayD::from_shape_vec(IxDyn(&self.shape), data)
            .map_err(|e| Error::Gpu(format!("the downloaded array has the wrong size: {e}")))
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device the array lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The number of storage buffers the array is stored in.
    pub fn buffer_count(&self) -> usize {
        self.chunks.len()
    }
}
