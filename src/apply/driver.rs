//! The executor's view of the Docker Engine: the calls it makes, as a trait, so that tests can
//! put a fake in its place (recording calls, injecting failures) and unit-test the restore
//! paths. [`Engine`] is the real one; the impl only forwards.

use std::future::Future;

use crate::docker::{ContainerInfo, DockerError, Engine};
use crate::model::{
    ContainerState, Health, NetworkSpec, ObservedMount, ServiceSpec, StackSpec, VolumeSpec,
};

type R<T> = Result<T, DockerError>;

/// What the executor asks of a container engine.
pub trait Driver: Sync {
    fn pull(
        &self,
        image: &str,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> impl Future<Output = R<()>> + Send;
    fn create_network(&self, stack: &str, spec: &NetworkSpec)
    -> impl Future<Output = R<()>> + Send;
    fn create_volume(&self, stack: &str, spec: &VolumeSpec) -> impl Future<Output = R<()>> + Send;
    fn remove_network(&self, name: &str) -> impl Future<Output = R<()>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = R<()>> + Send;
    /// Creates (does not start) a container; `reuse` are the anonymous volumes of the one it
    /// replaces. Returns its ID.
    fn create_container(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
        reuse: &[ObservedMount],
    ) -> impl Future<Output = R<String>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = R<()>> + Send;
    fn stop(&self, id: &str, grace: Option<i64>) -> impl Future<Output = R<()>> + Send;
    fn rename(&self, id: &str, name: &str) -> impl Future<Output = R<()>> + Send;
    fn remove(&self, id: &str) -> impl Future<Output = R<()>> + Send;
    fn inspect(&self, id_or_name: &str) -> impl Future<Output = R<ContainerInfo>> + Send;
    fn signal(&self, id: &str, signal: &str) -> impl Future<Output = R<()>> + Send;
    /// Runs a command in a running container: its exit code and output.
    fn exec(&self, id: &str, cmd: &[String]) -> impl Future<Output = R<(i64, String)>> + Send;
    fn inspect_state(
        &self,
        id_or_name: &str,
    ) -> impl Future<Output = R<(ContainerState, Option<Health>)>> + Send {
        async move {
            let info = self.inspect(id_or_name).await?;
            Ok((info.state, info.health))
        }
    }
}

impl Driver for Engine {
    async fn pull(&self, image: &str, progress: &mut (dyn FnMut(&str) + Send)) -> R<()> {
        Engine::pull(self, image, progress).await
    }
    async fn create_network(&self, stack: &str, spec: &NetworkSpec) -> R<()> {
        Engine::create_network(self, stack, spec).await.map(drop)
    }
    async fn create_volume(&self, stack: &str, spec: &VolumeSpec) -> R<()> {
        Engine::create_volume(self, stack, spec).await
    }
    async fn remove_network(&self, name: &str) -> R<()> {
        Engine::remove_network(self, name).await
    }
    async fn remove_volume(&self, name: &str) -> R<()> {
        Engine::remove_volume(self, name).await
    }
    async fn create_container(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
        reuse: &[ObservedMount],
    ) -> R<String> {
        Engine::create_container_reusing(self, stack, service, spec, number, name, reuse).await
    }
    async fn start(&self, id: &str) -> R<()> {
        Engine::start(self, id).await
    }
    async fn stop(&self, id: &str, grace: Option<i64>) -> R<()> {
        Engine::stop(self, id, grace).await
    }
    async fn rename(&self, id: &str, name: &str) -> R<()> {
        Engine::rename(self, id, name).await
    }
    async fn remove(&self, id: &str) -> R<()> {
        Engine::remove(self, id).await
    }
    async fn inspect(&self, id_or_name: &str) -> R<ContainerInfo> {
        Engine::inspect(self, id_or_name).await
    }
    async fn signal(&self, id: &str, signal: &str) -> R<()> {
        Engine::signal(self, id, signal).await
    }
    async fn exec(&self, id: &str, cmd: &[String]) -> R<(i64, String)> {
        Engine::exec(self, id, cmd).await
    }
}

/// A driver that lets at most `permits` changing calls reach the engine at once (reads go
/// through). The executor wraps the
/// real one in it: the bound is on Engine work, not on changes — a change that only waits for
/// its container's health holds no permit between polls, so many health checks are waited for
/// side by side while at most N requests are in flight.
pub(super) struct Throttled<'a, D> {
    pub inner: &'a D,
    pub permits: tokio::sync::Semaphore,
}

impl<D: Driver> Throttled<'_, D> {
    async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // Closed only if dropped; then run unthrottled rather than fail.
        self.permits.acquire().await.ok()
    }
}

impl<D: Driver> Driver for Throttled<'_, D> {
    async fn pull(&self, image: &str, progress: &mut (dyn FnMut(&str) + Send)) -> R<()> {
        let _p = self.permit().await;
        self.inner.pull(image, progress).await
    }
    async fn create_network(&self, stack: &str, spec: &NetworkSpec) -> R<()> {
        let _p = self.permit().await;
        self.inner.create_network(stack, spec).await
    }
    async fn create_volume(&self, stack: &str, spec: &VolumeSpec) -> R<()> {
        let _p = self.permit().await;
        self.inner.create_volume(stack, spec).await
    }
    async fn remove_network(&self, name: &str) -> R<()> {
        let _p = self.permit().await;
        self.inner.remove_network(name).await
    }
    async fn remove_volume(&self, name: &str) -> R<()> {
        let _p = self.permit().await;
        self.inner.remove_volume(name).await
    }
    async fn create_container(
        &self,
        stack: &StackSpec,
        service: &str,
        spec: &ServiceSpec,
        number: u32,
        name: &str,
        reuse: &[ObservedMount],
    ) -> R<String> {
        let _p = self.permit().await;
        self.inner
            .create_container(stack, service, spec, number, name, reuse)
            .await
    }
    async fn start(&self, id: &str) -> R<()> {
        let _p = self.permit().await;
        self.inner.start(id).await
    }
    async fn stop(&self, id: &str, grace: Option<i64>) -> R<()> {
        let _p = self.permit().await;
        self.inner.stop(id, grace).await
    }
    async fn rename(&self, id: &str, name: &str) -> R<()> {
        let _p = self.permit().await;
        self.inner.rename(id, name).await
    }
    async fn remove(&self, id: &str) -> R<()> {
        let _p = self.permit().await;
        self.inner.remove(id).await
    }
    /// A read: health polls take no permit, so waiting never slows creating.
    async fn inspect(&self, id_or_name: &str) -> R<ContainerInfo> {
        self.inner.inspect(id_or_name).await
    }
    async fn signal(&self, id: &str, signal: &str) -> R<()> {
        let _p = self.permit().await;
        self.inner.signal(id, signal).await
    }
    async fn exec(&self, id: &str, cmd: &[String]) -> R<(i64, String)> {
        let _p = self.permit().await;
        self.inner.exec(id, cmd).await
    }
}
