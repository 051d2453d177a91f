//! The device: adapter, queue, the kernels' pipelines, error capture.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::Error;

/// Threads per workgroup (`WG` in `loss.wgsl`).
pub(crate) const WORKGROUP: u64 = 256;
/// Elements per thread of the reducing kernels (the others take one).
pub(crate) const PER_THREAD_SUM: u64 = 8;
/// The largest buffer the arrays are cut into, whatever the adapter allows: 2^30 elements.
const MAX_CHUNK_BYTES: u64 = 1 << 32;

/// The most buffers, and bytes, the pool of freed result buffers keeps.
const POOL_BUFFERS: usize = 16;
const POOL_BYTES: u64 = 4 << 30;

/// The message when no adapter is found, naming the backends wgpu tried.
fn no_adapter() -> String {
    let tried = match std::env::var("WGPU_BACKEND") {
        Ok(v) if !v.trim().is_empty() => format!("the backends WGPU_BACKEND={v:?} selects"),
        _ => "Vulkan, Metal, DX12 and GL".to_owned(),
    };
    format!(
        "no GPU adapter found (wgpu tried {tried}); install a Vulkan driver, such as Mesa's \
         lavapipe (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1), or run on \
         a machine with a GPU"
    )
}

/// The process that opened a GPU device first (0: none yet). A child forked from it cannot
/// use the GPU: the device and the driver's state do not cross a fork.
static OPENED_IN: AtomicU32 = AtomicU32::new(0);

/// [`Error::GpuAfterFork`] in a process forked after a device was opened in its parent.
fn check_not_forked() -> Result<(), Error> {
    match OPENED_IN.load(Ordering::Relaxed) {
        0 => Ok(()),
        pid if pid == std::process::id() => Ok(()),
        _ => Err(Error::GpuAfterFork),
    }
}

/// Limits below the adapter's, to exercise the chunking on small arrays (tests, benchmarks).
///
/// [`Gpu::get`] reads them from the environment variables `BCERS_GPU_MAX_BINDING_BYTES`,
/// `BCERS_GPU_MAX_WORKGROUPS` and `BCERS_GPU_MAX_OUTPUT_SLOTS` when they are set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// The most bytes one storage buffer of an array holds (at most the adapter's
    /// `max_storage_buffer_binding_size`; rounded down to a multiple of 4, at least 4).
    pub max_binding_bytes: Option<u64>,
    /// The most workgroups one dispatch has along one dimension (at most the adapter's
    /// `max_compute_workgroups_per_dimension`, at least 1).
    pub max_workgroups_per_dimension: Option<u32>,
    /// The most array outputs one dispatch writes (at most what the adapter's storage-binding
    /// limit allows, at least 1): a call with more runs as several dispatches, as on a device
    /// with the 8 storage bindings WebGPU guarantees.
    pub max_output_slots: Option<usize>,
}

impl GpuOptions {
    fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        GpuOptions {
            max_binding_bytes: var("BCERS_GPU_MAX_BINDING_BYTES"),
            max_workgroups_per_dimension: var("BCERS_GPU_MAX_WORKGROUPS")
                .map(|v| v.min(u32::MAX as u64) as u32),
            max_output_slots: var("BCERS_GPU_MAX_OUTPUT_SLOTS")
                .map(|v| v.min(MAX_SLOTS as u64) as usize),
        }
    }
}

/// What the adapter says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterDescription {
    /// The adapter's name (`"NVIDIA H100 80GB HBM3"`, `"llvmpipe (LLVM 15.0.6, 256 bits)"`).
    pub name: String,
    /// The graphics API wgpu drives it through: `"vulkan"`, `"metal"`, `"dx12"` or `"gl"`.
    pub backend: String,
    /// `"discrete_gpu"`, `"integrated_gpu"`, `"virtual_gpu"`, `"cpu"` (a software
    /// implementation such as lavapipe) or `"other"`.
    pub device_type: String,
    /// The driver's name.
    pub driver: String,
    /// The driver's version and details.
    pub driver_info: String,
    /// The elements one storage buffer of an array holds on this device.
    pub chunk_elements: usize,
}

/// A handle on one GPU device: cheap to clone (clones share the device).
///
/// [`Gpu::get`] returns the process-wide device, opened on first use; [`Gpu::new`] opens
/// another one.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<Inner>,
}

impl core::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .finish()
    }
}

pub(crate) struct Inner {
    /// The process that opened the device.
    pub pid: u32,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Elements per storage buffer of an array.
    pub chunk: usize,
    /// The largest storage binding the device takes, in bytes (partial sums are bound whole).
    pub max_binding: u64,
    /// Workgroups per dispatch dimension.
    pub max_groups: u32,
    pub layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    module: wgpu::ShaderModule,
    /// The output slots of the kernel (storage bindings for array outputs).
    pub slots: usize,
    /// One per specialisation of the kernel, made on first use.
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// Bound where an operand is absent.
    pub dummy_read: wgpu::Buffer,
    /// Bound where an output slot is empty (one each, so no buffer is bound writable twice).
    pub dummy_write: Vec<wgpu::Buffer>,
    /// Buffers of arrays no longer used, for later results (most recently freed last).
    pool: Mutex<Vec<wgpu::Buffer>>,
    /// Errors no scope captured: (why the device was lost, kept; another error, reported once).
    uncaptured: Arc<Mutex<(Option<String>, Option<String>)>>,
}

static PROCESS_GPU: OnceLock<Result<Gpu, Error>> = OnceLock::new();

/// Whether a GPU adapter can be used: opens the process-wide device ([`Gpu::get`]) if it is
/// not open yet.
pub fn is_available() -> bool {
    Gpu::get().is_ok()
}

impl Gpu {
    /// The process-wide device, opened on the first call (the instance tries every native
    /// backend, `WGPU_BACKEND` narrows them; a hardware adapter is preferred, a software one
    /// such as lavapipe is taken otherwise). Later calls return the same device, or the same
    /// error.
    ///
    /// # Errors
    /// [`Error::GpuUnavailable`] when no adapter could be opened.
    pub fn get() -> Result<Gpu, Error> {
        check_not_forked()?;
        PROCESS_GPU
            .get_or_init(|| Gpu::with_options(GpuOptions::from_env()))
            .clone()
    }

    /// Opens a new device, separate from the process-wide one.
    ///
    /// # Errors
    /// [`Error::GpuUnavailable`] when no adapter could be opened.
    pub fn new() -> Result<Gpu, Error> {
        Gpu::with_options(GpuOptions::default())
    }

    /// Opens a new device with limits lowered by `options` (to exercise the chunking of large
    /// arrays and dispatches on small ones).
    ///
    /// # Errors
    /// [`Error::GpuUnavailable`] when no adapter could be opened.
    pub fn with_options(options: GpuOptions) -> Result<Gpu, Error> {
        check_not_forked()?;
        let inner = open(options)?;
        // The first device marks this process as the GPU's; later ones change nothing.
        let _ = OPENED_IN.compare_exchange(0, inner.pid, Ordering::Relaxed, Ordering::Relaxed);
        Ok(Gpu {
            inner: Arc::new(inner),
        })
    }

    /// The adapter's name, backend, type and driver.
    pub fn adapter(&self) -> AdapterDescription {
        let info = &self.inner.info;
        let device_type = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete_gpu",
            wgpu::DeviceType::IntegratedGpu => "integrated_gpu",
            wgpu::DeviceType::VirtualGpu => "virtual_gpu",
            wgpu::DeviceType::Cpu => "cpu",
            wgpu::DeviceType::Other => "other",
        };
        AdapterDescription {
            name: info.name.clone(),
            backend: info.backend.to_str().to_owned(),
            device_type: device_type.to_owned(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            chunk_elements: self.inner.chunk,
        }
    }

    /// Whether `self` and `other` are the same device.
    pub fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // In a forked child the device must not be touched, closing included (the driver's
        // threads and locks are the parent's): keep the last handle alive instead.
        if self.inner.pid != std::process::id() && Arc::strong_count(&self.inner) == 1 {
            std::mem::forget(Arc::clone(&self.inner));
        }
    }
}

fn open(options: GpuOptions) -> Result<Inner, Error> {
    let desc = wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        flags: wgpu::InstanceFlags::empty(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    }
    .with_env();
    let instance = wgpu::Instance::new(desc);
    let request = |fallback: bool| {
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: fallback,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
    };
    let adapter = request(false)
        .or_else(|_| request(true))
        .map_err(|e| Error::GpuUnavailable(format!("{} ({e})", no_adapter())))?;
    let info = adapter.get_info();
    let limits = adapter.limits();
    if !adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        || limits.max_storage_buffers_per_shader_stage < (FIXED_BINDINGS + 1) as u32
    {
        return Err(Error::GpuUnavailable(format!(
            "{} (the adapter found, {} on {}, cannot run the compute shaders: it lacks \
             compute shaders or 8 storage buffers per stage)",
            no_adapter(),
            info.name,
            info.backend.to_str()
        )));
    }
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("bcers"),
        required_features: wgpu::Features::empty(),
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|e| {
        Error::GpuUnavailable(format!(
            "could not open the GPU adapter {} ({}): {e}",
            info.name,
            info.backend.to_str()
        ))
    })?;
    let uncaptured = Arc::new(Mutex::new((None::<String>, None::<String>)));
    {
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.1.get_or_insert_with(|| e.to_string());
            }
        }));
        let sink = Arc::clone(&uncaptured);
        device.set_device_lost_callback(move |_reason, message| {
            if let Ok(mut slot) = sink.lock() {
                slot.0 = Some(format!("the GPU device was lost: {message}"));
            }
        });
    }

    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
        .min(MAX_CHUNK_BYTES);
    let max_binding = binding;
    let binding = options
        .max_binding_bytes
        .map_or(binding, |b| b.min(binding));
    let chunk = ((binding / 4).max(1)) as usize;
    let max_groups = limits.max_compute_workgroups_per_dimension.max(1);
    let max_groups = options
        .max_workgroups_per_dimension
        .map_or(max_groups, |g| g.clamp(1, max_groups));

    let scope = ErrorScope::push(&device);
    let slots = (limits.max_storage_buffers_per_shader_stage as usize)
        .saturating_sub(FIXED_BINDINGS)
        .min(options.max_output_slots.unwrap_or(MAX_SLOTS))
        .clamp(1, MAX_SLOTS);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("bcers loss kernels"),
        source: wgpu::ShaderSource::Wgsl(shader_source(slots).into()),
    });
    let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("bcers loss bindings"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            },
            storage(1, true),
            storage(2, true),
            storage(3, true),
            storage(4, true),
            storage(5, true),
            storage(6, false),
            storage(7, true),
        ]
        .into_iter()
        .chain((0..slots).map(|k| storage((FIXED_BINDINGS + 1 + k) as u32, false)))
        .collect::<Vec<_>>(),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("bcers loss layout"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let small = |label: &'static str, usage: wgpu::BufferUsages| {
        // 16 bytes: nothing to check beforehand.
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 16,
            usage,
            mapped_at_creation: false,
        })
    };
    let rw = wgpu::BufferUsages::STORAGE;
    let inner = Inner {
        pid: std::process::id(),
        dummy_read: small("bcers absent operand", wgpu::BufferUsages::STORAGE),
        dummy_write: (0..slots)
            .map(|_| small("bcers empty output slot", rw))
            .collect(),
        device,
        queue,
        info,
        chunk,
        max_binding,
        max_groups,
        layout,
        pipeline_layout,
        module,
        slots,
        pipelines: Mutex::new(HashMap::new()),
        pool: Mutex::new(Vec::new()),
        uncaptured,
    };
    scope.pop(&inner)?;
    Ok(inner)
}

/// The storage bindings every pipeline has: input, target, weight, pos_weight, grad_output,
/// the scratch buffer (range flags and partial sums), the mask. The output slots come after
/// them.
pub(crate) const FIXED_BINDINGS: usize = 7;
/// The most output slots a kernel is compiled with.
pub(crate) const MAX_SLOTS: usize = 4;

/// The kernel's source for a device with `slots` output slots: the elementary functions, the
/// losses' WGSL twins, and the kernel with the slots' bindings, their writes and their zeros
/// (for the elements a mask leaves out).
fn shader_source(slots: usize) -> String {
    let mut decls = String::new();
    let mut writes = String::from("fn write_slots(j: u32, d: Derivs, w: f32, i: u32) {\n");
    let mut zeros = String::from("fn zero_slots(j: u32) {\n");
    for k in 0..slots {
        zeros.push_str(&format!(
            "    if ROLE_{k} != 0u {{\n        OUT{k}[j] = 0.0;\n    }}\n"
        ));
        decls.push_str(&format!(
            "@group(0) @binding({}) var<storage, read_write> OUT{k}: array<f32>;\n",
            FIXED_BINDINGS + 1 + k
        ));
        writes.push_str(&format!(
            "    if ROLE_{k} != 0u {{\n        OUT{k}[j] = output(ROLE_{k}, d, w, i);\n    }}\n"
        ));
    }
    writes.push_str("}\n");
    zeros.push_str("}\n");
    let kernel = include_str!("kernel.wgsl")
        .replace("{OUTPUT_SLOTS}", &(decls + "\n" + &writes + "\n" + &zeros));
    [
        include_str!("math.wgsl"),
        crate::loss::WGSL_COMMON,
        &crate::loss::WGSL.join("\n"),
        &kernel,
    ]
    .join("\n")
}

/// What one kernel pipeline is specialised for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    /// The loss (`LOSS`).
    pub loss: u32,
    /// The values are summed (`SUM`).
    pub sum: bool,
    /// What each output slot holds (`ROLE_k`).
    pub roles: [u32; MAX_SLOTS],
    /// The values are needed (`WANT_VALUE`).
    pub value: bool,
    /// The input gradient is needed (`WANT_GRAD`).
    pub grad: bool,
    /// The target gradient is needed (`WANT_GRAD_TARGET`).
    pub grad_target: bool,
    /// The second derivative is needed (`WANT_HESS`).
    pub hess: bool,
    /// Elements are left out where the mask is 0 (`MASKED`).
    pub masked: bool,
}

impl PipelineKey {
    /// Elements per thread of its kernel: 8 for sums, 1 otherwise.
    pub(crate) fn per_thread(&self) -> u64 {
        if self.sum {
            PER_THREAD_SUM
        } else {
            1
        }
    }

    /// Elements per workgroup.
    pub(crate) fn tile(&self) -> u64 {
        WORKGROUP * self.per_thread()
    }
}

/// The memory a device in host memory must have left beyond a new buffer (see
/// [`Inner::create_buffer`]).
const HOST_MARGIN: u64 = 64 << 20;

impl Inner {
    /// The pipeline of `key`, made on first use.
    pub(crate) fn pipeline(&self, key: PipelineKey) -> Result<wgpu::ComputePipeline, Error> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let scope = ErrorScope::push(&self.device);
        let flag = |b: bool| f64::from(u8::from(b));
        let mut constants: Vec<(&str, f64)> = vec![
            ("LOSS", f64::from(key.loss)),
            ("SUM", flag(key.sum)),
            ("PER_THREAD", key.per_thread() as f64),
            ("WANT_VALUE", flag(key.value)),
            ("WANT_GRAD", flag(key.grad)),
            ("WANT_GRAD_TARGET", flag(key.grad_target)),
            ("WANT_HESS", flag(key.hess)),
            ("MASKED", flag(key.masked)),
        ];
        const ROLES: [&str; MAX_SLOTS] = ["ROLE_0", "ROLE_1", "ROLE_2", "ROLE_3"];
        for (name, role) in ROLES.iter().zip(key.roles) {
            constants.push((name, f64::from(role)));
        }
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("bcers loss kernel"),
                layout: Some(&self.pipeline_layout),
                module: &self.module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        scope.pop(self)?;
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Keeps `buffers` (of an array no longer used) for later results: the most recent
    /// [`POOL_BUFFERS`], up to [`POOL_BYTES`] in all.
    pub(crate) fn recycle(&self, buffers: Vec<wgpu::Buffer>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.extend(buffers);
        let mut bytes = 0;
        let mut keep = 0;
        for b in pool.iter().rev() {
            if keep == POOL_BUFFERS || bytes + b.size() > POOL_BYTES {
                break;
            }
            bytes += b.size();
            keep += 1;
        }
        let drop_count = pool.len() - keep;
        pool.drain(..drop_count);
    }

    /// A pooled buffer of exactly `size` bytes, if there is one.
    pub(crate) fn reuse(&self, size: u64) -> Option<wgpu::Buffer> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let i = pool.iter().rposition(|b| b.size() == size)?;
        Some(pool.remove(i))
    }

    /// [`Error::GpuAfterFork`] in a process forked after this device was opened.
    pub(crate) fn check_process(&self) -> Result<(), Error> {
        if self.pid == std::process::id() {
            Ok(())
        } else {
            Err(Error::GpuAfterFork)
        }
    }

    /// A buffer of `desc.size` bytes, or [`Error::OutOfMemory`]. Where the buffer's bytes are
    /// host memory (a buffer mapped at creation is staged there, a read-back buffer lives
    /// there, and a software device such as lavapipe keeps all its memory there), the host
    /// allocation is tried first: a driver that fails to allocate it may crash rather than
    /// report the error.
    pub(crate) fn create_buffer(
        &self,
        desc: &wgpu::BufferDescriptor<'_>,
    ) -> Result<wgpu::Buffer, Error> {
        let host = desc.mapped_at_creation
            || desc.usage.contains(wgpu::BufferUsages::MAP_READ)
            || self.info.device_type == wgpu::DeviceType::Cpu;
        if host {
            // wgpu and the drivers do not all report a failed allocation: lavapipe's (a device
            // in host memory) ends in a write through a null mapping. So the memory is asked of
            // the allocator first, and given back: twice the size for a buffer mapped at
            // creation there (the buffer's memory and the mapping's), with a margin for what
            // the driver allocates around it, so that the last buffers before memory runs out
            // fail here and not in the driver.
            let cpu = self.info.device_type == wgpu::DeviceType::Cpu;
            let copies = if desc.mapped_at_creation && cpu { 2 } else { 1 };
            let margin = if cpu { HOST_MARGIN } else { 0 };
            let mut probe: Vec<u8> = Vec::new();
            let bytes = usize::try_from(desc.size.saturating_mul(copies).saturating_add(margin))
                .unwrap_or(usize::MAX);
            probe
                .try_reserve_exact(bytes)
                .map_err(|_| Error::OutOfMemory {
                    what: "a GPU buffer",
                    bytes: desc.size,
                })?;
        }
        Ok(self.device.create_buffer(desc))
    }

    /// An error recorded outside any scope: why the device was lost (every time), or another
    /// error (once).
    pub(crate) fn uncaptured(&self) -> Option<String> {
        let mut slot = self.uncaptured.lock().unwrap_or_else(|p| p.into_inner());
        slot.0.clone().or_else(|| slot.1.take())
    }
}

/// Captures the errors (out of memory, validation, internal) of the device calls made while
/// it is held: wgpu reports them asynchronously, or panics where nothing captures them.
pub(crate) struct ErrorScope {
    scopes: Vec<wgpu::ErrorScopeGuard>,
}

impl ErrorScope {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        ErrorScope {
            scopes: vec![
                device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
                device.push_error_scope(wgpu::ErrorFilter::Validation),
                device.push_error_scope(wgpu::ErrorFilter::Internal),
            ],
        }
    }

    /// Ends the capture: the first error seen, if any ([`Error::OutOfMemory`] for the
    /// device's out-of-memory error).
    pub(crate) fn pop(mut self, inner: &Inner) -> Result<(), Error> {
        let mut first = None;
        while let Some(scope) = self.scopes.pop() {
            if let Some(e) = pollster::block_on(scope.pop()) {
                first.get_or_insert(match e {
                    wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory {
                        what: "GPU memory",
                        bytes: 0,
                    },
                    other => Error::Gpu(other.to_string()),
                });
            }
        }
        match first {
            Some(e) => Err(e),
            None => match inner.uncaptured() {
                Some(why) => Err(Error::Gpu(why)),
                None => Ok(()),
            },
        }
    }
}
