"""The Python `kubernetes` client against a running Skiff API server.

Run by tests/client_python.rs with the cluster's kubeconfig as the only
argument. Lists, creates, watches and deletes through the generated typed
client, so its model deserialization checks every object the server sends.
Exits non-zero (with a traceback) on the first failed expectation.
"""

import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NAMESPACE = "py-client"


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()

    version = client.VersionApi().get_code()
    expect(version.major == "1", f"version {version}")

    names = [ns.metadata.name for ns in core.list_namespace().items]
    expect("default" in names and "kube-system" in names, f"namespaces {names}")

    core.create_namespace({"metadata": {"name": NAMESPACE, "labels": {"suite": "python"}}})
    selected = core.list_namespace(label_selector="suite=python").items
    expect([ns.metadata.name for ns in selected] == [NAMESPACE], f"selected {selected}")
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        raise AssertionError("a second create succeeded")
    except ApiException as err:
        expect(err.status == 409, f"second create: {err.status} {err.reason}")

    # Watch from the list's resourceVersion: every change after it, in order.
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "py1", "labels": {"app": "py"}},
        "spec": {"containers": [{"name": "main", "image": "/nonexistent/guest.wasm"}]},
    }
    created = core.create_namespaced_pod(NAMESPACE, pod)
    expect(created.metadata.uid, "created pod has a uid")
    expect(created.metadata.creation_timestamp is not None, "creationTimestamp parsed")
    core.patch_namespaced_pod("py1", NAMESPACE, {"metadata": {"labels": {"step": "patched"}}})
    got = core.read_namespaced_pod("py1", NAMESPACE)
    expect(got.metadata.labels == {"app": "py", "step": "patched"}, f"labels {got.metadata.labels}")
    by_field = core.list_namespaced_pod(NAMESPACE, field_selector="metadata.name=py1").items
    expect(len(by_field) == 1, f"field selector gave {len(by_field)} pods")
    missing = core.list_namespaced_pod(NAMESPACE, label_selector="app=other").items
    expect(missing == [], f"label selector gave {missing}")
    core.delete_namespaced_pod("py1", NAMESPACE, grace_period_seconds=0)

    seen = []
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        NAMESPACE,
        resource_version=start,
        timeout_seconds=120,
    )
    for event in stream:
        pod = event["object"]
        if event["type"] == "ERROR":
            raise AssertionError(f"watch error {event['raw_object']}")
        seen.append((event["type"], pod.metadata.name, (pod.metadata.labels or {}).get("step")))
        if event["type"] == "DELETED":
            break
    expect(seen and seen[0] == ("ADDED", "py1", None), f"events {seen}")
    expect(("MODIFIED", "py1", "patched") in seen, f"events {seen}")
    expect(seen[-1][0] == "DELETED", f"events {seen}")

    try:
        core.read_namespaced_pod("py1", NAMESPACE)
        raise AssertionError("the deleted pod is still there")
    except ApiException as err:
        expect(err.status == 404, f"read after delete: {err.status}")

    core.delete_namespace(NAMESPACE)
    print(f"python client: ok ({len(seen)} watch events)")


if __name__ == "__main__":
    main(sys.argv[1])
