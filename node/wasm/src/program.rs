//! Prepared programs: compiled code linked against the node's WASI host, ready to
//! instantiate many times.

use std::sync::Arc;

use wasmtime::component::{self, ResourceTable};
use wasmtime::{Engine, ExternType, InstancePre, StoreLimits};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::artifact::Compiled;
use crate::error::{BoxError, RuntimeError};

/// The binary format of a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    /// A `wasi:cli/command` component (wasm32-wasip2).
    Component,
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
    pub(crate) limits: StoreLimits,
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
    pub(crate) limits: StoreLimits,
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
        let mut module = wasmtime::Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module, |s: &mut ModuleState| &mut s.wasi)
            .map_err(|e| RuntimeError::Linker {
                world: "wasi_snapshot_preview1",
                source: e.into(),
            })?;
        Ok(Linkers { component, module })
    }

    /// Resolves the program's imports against the host; fails (with a message for
    /// the user) when it needs something the node does not provide or is not a
    /// command.
    pub(crate) fn pre_instantiate(&self, compiled: Compiled) -> Result<Pre, String> {
        let describe = |e: wasmtime::Error| format!("{e:#}");
        match compiled {
            Compiled::Component(component) => {
                let pre = self
                    .component
                    .instantiate_pre(&component)
                    .map_err(describe)?;
                let command = CommandPre::new(pre).map_err(|e| {
                    format!(
                        "not a wasi:cli/command component (no usable wasi:cli/run export): {e:#}"
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

/// Keeps `BoxError` conversions in one place for the run path.
pub(crate) fn boxed(error: wasmtime::Error) -> BoxError {
    error.into()
}
