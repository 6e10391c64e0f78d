//! Prepared programs: compiled code linked against the node's WASI host, ready to
//! instantiate many times.

use std::sync::Arc;

use wasmtime::component::{self, ResourceTable};
use wasmtime::{Engine, ExternType, InstancePre};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::artifact::Compiled;
use crate::error::{BoxError, RuntimeError};
use crate::http_outbound::OutboundPolicy;
use crate::run::GuestLimits;

/// What a program is: its binary format and how it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    /// A `wasi:cli/command` component (wasm32-wasip2).
    Component,
    /// A `wasi:http/proxy` component (exports `wasi:http/incoming-handler`):
    /// served with a fresh instance per request, never run.
    HttpProxy,
    /// A WASI preview-1 core module exporting `_start` (wasm32-wasip1).
    Module,
}

/// A fetched, validated and compiled artifact. Cheap to clone; instantiating it
/// does no compilation.
#[derive(Clone)]
pub struct Program {
    inner: Arc<ProgramInner>,
}

struct ProgramInner {
    digest: String,
    pre: Pre,
}

pub(crate) enum Pre {
    Component(CommandPre<ComponentState>),
    Http(ProxyPre<ComponentState>),
    Module(InstancePre<ModuleState>),
}

impl Program {
    pub(crate) fn new(digest: String, pre: Pre) -> Program {
        Program {
            inner: Arc::new(ProgramInner { digest, pre }),
        }
    }

    /// `sha256:<hex>` of the artifact's bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub fn kind(&self) -> ProgramKind {
        match self.inner.pre {
            Pre::Component(_) => ProgramKind::Component,
            Pre::Http(_) => ProgramKind::HttpProxy,
            Pre::Module(_) => ProgramKind::Module,
        }
    }

    pub(crate) fn pre(&self) -> &Pre {
        &self.inner.pre
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("digest", &self.digest())
            .field("kind", &self.kind())
            .finish()
    }
}

/// Store data of a running component.
pub(crate) struct ComponentState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: GuestLimits,
    pub(crate) http: WasiHttpCtx,
    /// Decides what outgoing `wasi:http` requests may do.
    pub(crate) outbound: OutboundPolicy,
}

impl ComponentState {
    pub(crate) fn new(
        wasi: WasiCtx,
        limits: GuestLimits,
        outbound: OutboundPolicy,
    ) -> ComponentState {
        ComponentState {
            wasi,
            table: ResourceTable::new(),
            limits,
            http: WasiHttpCtx::new(),
            outbound,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Store data of a running preview-1 module.
pub(crate) struct ModuleState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limits: GuestLimits,
}

/// The WASI host functions, linked once per node and shared by every program.
pub(crate) struct Linkers {
    component: component::Linker<ComponentState>,
    module: wasmtime::Linker<ModuleState>,
}

impl Linkers {
    pub(crate) fn new(engine: &Engine) -> Result<Linkers, RuntimeError> {
        let mut component = component::Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component).map_err(|e| {
            RuntimeError::Linker {
                world: "wasi:cli/command",
                source: e.into(),
            }
        })?;
        // Command components may import wasi:http too (for outgoing requests); the
        // outbound policy in each store decides what such requests may do.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component).map_err(|e| {
            RuntimeError::Linker {
                world: "wasi:http/proxy",
                source: e.into(),
            }
        })?;
        let mut module = wasmtime::Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module, |s: &mut ModuleState| &mut s.wasi)
            .map_err(|e| RuntimeError::Linker {
                world: "wasi_snapshot_preview1",
                source: e.into(),
            })?;
        Ok(Linkers { component, module })
    }

    /// Resolves the program's imports against the host; fails (with a message for
    /// the user) when it needs something the node does not provide or is neither
    /// a command nor an HTTP handler. A component exporting
    /// `wasi:http/incoming-handler` is served over HTTP even if it is a command too.
    pub(crate) fn pre_instantiate(&self, compiled: Compiled) -> Result<Pre, String> {
        let describe = |e: wasmtime::Error| format!("{e:#}");
        match compiled {
            Compiled::Component(component) => {
                let pre = self
                    .component
                    .instantiate_pre(&component)
                    .map_err(describe)?;
                if exports_incoming_handler(&component, self.component.engine()) {
                    let proxy = ProxyPre::new(pre).map_err(|e| {
                        format!("unusable wasi:http/incoming-handler export: {e:#}")
                    })?;
                    return Ok(Pre::Http(proxy));
                }
                let command = CommandPre::new(pre).map_err(|e| {
                    format!(
                        "neither a wasi:cli/command (no usable wasi:cli/run export) nor a wasi:http/proxy component (no wasi:http/incoming-handler export): {e:#}"
                    )
                })?;
                Ok(Pre::Component(command))
            }
            Compiled::Module(module) => {
                match module.get_export("_start") {
                    Some(ExternType::Func(ty))
                        if ty.params().len() == 0 && ty.results().len() == 0 => {}
                    _ => {
                        return Err("not a WASI command module (no `_start: func()` export)".into());
                    }
                }
                let pre = self.module.instantiate_pre(&module).map_err(describe)?;
                Ok(Pre::Module(pre))
            }
        }
    }
}

/// `wasi:http/incoming-handler@<any 0.2 version>`.
fn exports_incoming_handler(component: &component::Component, engine: &Engine) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with("wasi:http/incoming-handler@"))
}

/// Keeps `BoxError` conversions in one place for the run path.
pub(crate) fn boxed(error: wasmtime::Error) -> BoxError {
    error.into()
}
