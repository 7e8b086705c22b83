//! The Kubernetes source against a real API server (kube-apiserver v1.20 and etcd, started per
//! test): pods, namespaces and policies written through the API name and decide the lab's real
//! traffic. The API server has no kubelet, so the tests write each pod's status (its IP) as a
//! kubelet would, mapping API pods onto lab pods by address; their names are unlike the lab's.

mod util;

use std::{net::SocketAddr, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use util::{KubeApi, LabGuard, Observer, eventually, lab_up, observe_json};

const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs/l7.yaml");
/// The lab's pods these tests map API pods onto.
const WEB: &str = "198.18.7.1";
const BATCH: &str = "198.18.7.2";
const API: &str = "198.18.7.3";
/// The node name `util::Observer` gives its observers.
const NODE: &str = "test-node";
const WAIT: Duration = Duration::from_secs(20);

async fn delete_policy(client: &Client, namespace: &str, name: &str) {
    let api: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(client.clone(), namespace);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete policy");
}

/// A pod of `namespace` on this test's node with `labels`, given `ip` as a kubelet would.
async fn pod(client: &Client, namespace: &str, name: &str, labels: Value, ip: &str) {
    owned_pod(client, namespace, name, labels, json!([]), ip).await
}

/// A pod with owner references, as a controller creates it, on this test's node.
async fn owned_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: Value,
    owners: Value,
    ip: &str,
) {
    util::kube_pod(client, namespace, name, labels, owners, NODE, ip).await
}

async fn namespace(client: &Client, name: &str, labels: Value) {
    util::kube_apply(
        client,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "labels": labels}}),
    )
    .await;
}

/// The lab, and an API server with the cluster the tests share: namespace `store` with
/// checkout (on the lab's web pod), orders (on api) and reports (on batch).
async fn cluster() -> (LabGuard, KubeApi, Client) {
    let lab = lab_up(LAB);
    let api = KubeApi::start();
    let client = api.client().await;
    namespace(&client, "store", json!({"team": "shop"})).await;
    for (name, app, ip) in [
        ("checkout-5d8f9c", "checkout", WEB),
        ("orders-api-7c9d4f", "orders", API),
        ("reports-job-x2k8p", "reports", BATCH),
    ] {
        pod(&client, "store", name, json!({ "app": app }), ip).await;
    }
    (lab, api, client)
}

/// Installs the CiliumNetworkPolicy CRD (schema-less, as the tests need) and waits until the
/// observer watches the kind.
async fn install_cilium_crd(client: &Client, observer: &Observer) {
    util::kube_apply(
        client,
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "ciliumnetworkpolicies.cilium.io"},
               "spec": {"group": "cilium.io", "scope": "Namespaced",
                        "names": {"kind": "CiliumNetworkPolicy", "plural": "ciliumnetworkpolicies",
                                  "singular": "ciliumnetworkpolicy"},
                        "versions": [{"name": "v2", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": true}}}]}}),
    )
    .await;
    eventually("the Cilium CRDs seen", Duration::from_secs(30), || {
        (observer.status()["kubernetes"]["cilium_crds"] == true).then_some(())
    });
}

/// NetworkPolicy store/orders-ingress: isolates orders for ingress, admitting pods with
/// `app: from` when given.
fn orders_ingress(from: Option<&str>) -> Value {
    let ingress = match from {
        Some(app) => json!([{"from": [{"podSelector": {"matchLabels": {"app": app}}}]}]),
        None => json!([]),
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "orders-ingress", "namespace": "store"},
           "spec": {"podSelector": {"matchLabels": {"app": "orders"}},
                    "policyTypes": ["Ingress"], "ingress": ingress}})
}

fn observer(api: &KubeApi) -> Observer {
    let kubeconfig = api.kubeconfig.display().to_string();
    Observer::start(&[
        "--interface",
        "fsl*",
        "--endpoint-interface",
        "fsl*",
        "--kubeconfig",
        &kubeconfig,
    ])
}

/// Whether `pod` (a lab pod's namespace) reaches the lab's api pod on 8080.
fn reaches_api(pod: &str) -> bool {
    util::tcp_probe(&format!("fsl-shop-{pod}"), API, 8080)
}

/// An HTTP request from a lab pod to the api pod: the status, or None without an answer.
fn http(pod: &str, method: &'static str) -> Option<u16> {
    let dst: SocketAddr = format!("{API}:8080").parse().unwrap();
    let probe = flowscope_lab::topology::spawn_in(&format!("fsl-shop-{pod}"), move || {
        flowscope_lab::servers::http_request(dst, method, "/orders", Duration::from_secs(2))
    })
    .unwrap()
    .join()
    .unwrap();
    // `detail` is the status line's code and reason ("200 OK") when an answer came.
    probe
        .connected
        .then(|| probe.detail.split(' ').next()?.parse().ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_namespaces_and_policies_come_from_the_api_server() {
    let (_lab, api, client) = cluster().await;
    let observer = observer(&api);
    let st = observer.status();
    assert_eq!(st["kubernetes"]["synced"], true, "{st}");
    assert_eq!(st["kubernetes"]["connected"], true, "{st}");

    // Flows carry the API's names and labels, not the lab's.
    assert!(reaches_api("web"));
    let server = observer.api.to_string();
    let named = eventually("a flow named from the API", WAIT, || {
        observe_json(
            &server,
            &["--to-pod", "store/orders-api-7c9d4f", "--last", "20"],
        )
        .into_iter()
        .find(|f| f["source"]["pod_name"] == "checkout-5d8f9c")
    });
    assert!(
        named["source"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "k8s:app=checkout"),
        "{named}"
    );
    assert!(
        named["destination"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "k8s:io.cilium.k8s.namespace.labels.team=shop"),
        "{named}"
    );

    // A NetworkPolicy created through the API isolates orders; changed, it admits checkout
    // only; deleted, everything again.
    let before = observer.policy_revision();
    util::kube_apply(&client, orders_ingress(None)).await;
    util::wait_for_revision_after(&observer, before);
    assert!(!reaches_api("web") && !reaches_api("batch"));
    let before = observer.policy_revision();
    util::kube_apply(&client, orders_ingress(Some("checkout"))).await;
    util::wait_for_revision_after(&observer, before);
    assert!(reaches_api("web"));
    assert!(!reaches_api("batch"));
    let dropped = eventually("the drop naming the API's policy", WAIT, || {
        observe_json(
            &server,
            &[
                "--verdict",
                "DROPPED",
                "--from-pod",
                "store/reports-job-x2k8p",
                "--last",
                "20",
            ],
        )
        .into_iter()
        .find(|f| f["drop_reason_desc"] == "POLICY_DENIED")
    });
    assert_eq!(
        dropped["destination"]["pod_name"], "orders-api-7c9d4f",
        "{dropped}"
    );

    // `policy list` names where each policy comes from.
    let listed = util::flowscope(&["policy", "list", "--server", &server]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.lines().any(|l| l.starts_with("NetworkPolicy")
            && l.contains("store/orders-ingress")
            && l.contains(" api ")
            && l.ends_with("store/orders-api-7c9d4f")),
        "{listed}"
    );

    // CiliumNetworkPolicy, once its CRD is installed, with L7 rules.
    install_cilium_crd(&client, &observer).await;
    let before = observer.policy_revision();
    util::kube_apply(
        &client,
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
               "metadata": {"name": "orders-get-only", "namespace": "store"},
               "spec": {"endpointSelector": {"matchLabels": {"app": "orders"}},
                        "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "checkout"}}],
                                     "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}],
                                                  "rules": {"http": [{"method": "GET"}]}}]}]}}),
    )
    .await;
    util::wait_for_revision_after(&observer, before);
    // checkout is admitted at L4 by the NetworkPolicy too (rules add up), so every request
    // of it passes; deleting that policy leaves the HTTP rule in charge.
    assert_eq!(http("web", "POST"), Some(200));
    let before = observer.policy_revision();
    delete_policy(&client, "store", "orders-ingress").await;
    util::wait_for_revision_after(&observer, before);
    assert_eq!(http("web", "GET"), Some(200));
    assert_eq!(http("web", "POST"), Some(403));
    assert_eq!(http("batch", "GET"), None, "reports is not admitted at all");

    // An invalid object is reported, naming it, and the others stay enforced.
    let before = observer.policy_revision();
    util::kube_apply(
        &client,
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
               "metadata": {"name": "typo", "namespace": "store"},
               "spec": {"endpointSelector": {"matchLabels": {"app": "reports"}},
                        "ingres": [{}]}}),
    )
    .await;
    util::wait_for_revision_after(&observer, before);
    let policies = util::http_get(observer.api, "/api/v1/policies").unwrap().1;
    let policies: Value = serde_json::from_str(&policies).unwrap();
    let errors: Vec<&str> = policies["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("api:CiliumNetworkPolicy/store/typo:") && e.contains("ingres")),
        "{errors:?}"
    );
    assert_eq!(
        http("web", "POST"),
        Some(403),
        "the valid policy still holds"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn relabelled_and_deleted_pods_take_their_identity_and_policies_with_them() {
    let (_lab, api, client) = cluster().await;
    util::kube_apply(&client, orders_ingress(Some("checkout"))).await;
    let observer = observer(&api);
    assert!(!reaches_api("batch"));
    let identity = |observer: &Observer, pod: &str| {
        let server = observer.api.to_string();
        observe_json(&server, &["--from-pod", pod, "--last", "1"])
            .first()
            .map(|f| f["source"]["identity"].clone())
    };
    let old = eventually("reports' identity", WAIT, || {
        identity(&observer, "store/reports-job-x2k8p")
    });

    // A change that touches nothing policies read (an annotation) is seen, and compiles
    // nothing again.
    let (seen, installed) = (
        observer.status()["kubernetes"]["revision"]
            .as_u64()
            .unwrap(),
        observer.policy_revision(),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "store");
    pods.patch(
        "reports-job-x2k8p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"note": "unrelated"}}})),
    )
    .await
    .expect("annotate");
    eventually("the annotation seen", WAIT, || {
        (observer.status()["kubernetes"]["revision"].as_u64()? > seen).then_some(())
    });
    // The policy loop polls every 250 ms: a recompile would have happened by the next status.
    assert!(reaches_api("web") && !reaches_api("batch"));
    assert_eq!(
        observer.policy_revision(),
        installed,
        "an annotation recompiled the policies"
    );

    // reports relabelled as a checkout: same identity as checkout now, and admitted.
    let before = observer.policy_revision();
    pod(
        &client,
        "store",
        "reports-job-x2k8p",
        json!({"app": "checkout"}),
        BATCH,
    )
    .await;
    util::wait_for_revision_after(&observer, before);
    assert!(reaches_api("batch"));
    let new = eventually("reports' new identity", WAIT, || {
        identity(&observer, "store/reports-job-x2k8p").filter(|id| *id != old)
    });
    let checkout = eventually("checkout's identity", WAIT, || {
        assert!(reaches_api("web"));
        identity(&observer, "store/checkout-5d8f9c")
    });
    assert_eq!(new, checkout, "one identity per label set");

    // Deleted, it is no pod any more: its address is the world's, which orders does not admit.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "store");
    let before = observer.policy_revision();
    pods.delete(
        "reports-job-x2k8p",
        &DeleteParams::default().grace_period(0),
    )
    .await
    .expect("delete pod");
    util::wait_for_revision_after(&observer, before);
    assert!(!reaches_api("batch"));
    let server = observer.api.to_string();
    let gone = eventually("a flow from the deleted pod's address", WAIT, || {
        observe_json(&server, &["--from-ip", BATCH, "--last", "1"])
            .into_iter()
            .next()
    });
    assert_eq!(gone["source"]["pod_name"], Value::Null, "{gone}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_state_is_enforced_while_the_api_server_is_away() {
    let (_lab, api, client) = cluster().await;
    util::kube_apply(&client, orders_ingress(Some("checkout"))).await;
    let observer = observer(&api);
    assert!(reaches_api("web") && !reaches_api("batch"));

    api.stop_apiserver();
    let st = eventually(
        "the API server reported away",
        Duration::from_secs(60),
        || {
            let st = observer.status();
            (st["kubernetes"]["connected"] == false).then_some(st)
        },
    );
    assert!(st["kubernetes"]["last_error"].is_string(), "{st}");
    // Nothing changes meanwhile: the pods keep their names, the policy holds.
    assert!(reaches_api("web") && !reaches_api("batch"));
    let server = observer.api.to_string();
    assert!(
        !observe_json(
            &server,
            &["--from-pod", "store/checkout-5d8f9c", "--last", "1"]
        )
        .is_empty(),
        "flows keep the API's names while it is away"
    );

    api.start_apiserver();
    eventually("the API server back", Duration::from_secs(60), || {
        (observer.status()["kubernetes"]["connected"] == true).then_some(())
    });
    // And changes flow again.
    let client = api.client().await;
    let before = observer.policy_revision();
    delete_policy(&client, "store", "orders-ingress").await;
    util::wait_for_revision_after(&observer, before);
    assert!(reaches_api("batch"));
}

/// An owner reference to a controller of `kind` named `name`.
fn owner(kind: &str, name: &str) -> Value {
    let api_version = if kind == "Job" { "batch/v1" } else { "apps/v1" };
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "controller": true,
            "uid": "00000000-0000-4000-8000-000000000001"}])
}

/// A flow from checkout to the orders service, as `server` names it, with web's traffic.
fn checkout_to_orders(server: &str, what: &str) -> serde_json::Value {
    eventually(what, WAIT, || {
        assert!(reaches_api("web"));
        observe_json(server, &["--to-service", "store/orders", "--last", "20"])
            .into_iter()
            .find(|f| f["source"]["pod_name"] == "checkout-5d8f9c")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn services_nodes_and_workloads_name_the_flows() {
    let (_lab, api, client) = cluster().await;
    // checkout as a Deployment's pod, owned by its ReplicaSet.
    owned_pod(
        &client,
        "store",
        "checkout-5d8f9c",
        json!({"app": "checkout", "pod-template-hash": "5d8f9c"}),
        owner("ReplicaSet", "checkout-5d8f9c"),
        WEB,
    )
    .await;
    // The Service orders (port 80 -> 8080) and its EndpointSlice, as the EndpointSlice
    // controller (which a bare API server lacks) would write it: `v1beta1` is what 1.20 serves,
    // and no Endpoints object exists.
    util::kube_apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "orders", "namespace": "store"},
               "spec": {"selector": {"app": "orders"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                   "protocol": "TCP"}]}}),
    )
    .await;
    util::kube_apply(
        &client,
        json!({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
               "metadata": {"name": "orders-x7k2p", "namespace": "store",
                            "labels": {"kubernetes.io/service-name": "orders"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": [API], "conditions": {"ready": true}}],
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
    )
    .await;
    let observer = observer(&api);
    let server = observer.api.to_string();
    assert_eq!(
        observer.status()["kubernetes"]["service_backends"],
        "discovery.k8s.io/v1beta1 EndpointSlice"
    );

    // A request to the service's backend names the service; the answer comes from it.
    let to_service = checkout_to_orders(&server, "a flow to the orders service");
    assert_eq!(
        to_service["destination_service"],
        json!({"name": "orders", "namespace": "store"}),
        "{to_service}"
    );
    assert_eq!(
        to_service["source"]["workloads"],
        json!([{"name": "checkout", "kind": "Deployment"}]),
        "{to_service}"
    );
    let reply = eventually("a reply from the orders service", WAIT, || {
        observe_json(&server, &["--from-service", "store/orders", "--last", "20"])
            .into_iter()
            .next()
    });
    assert_eq!(reply["source"]["pod_name"], "orders-api-7c9d4f", "{reply}");
    assert_eq!(reply["source_service"]["name"], "orders", "{reply}");
    // Another port of the same pod is no service's.
    let other = observe_json(&server, &["--to-service", "store/orders", "--last", "200"]);
    assert!(
        other
            .iter()
            .all(|f| f["l4"]["TCP"]["destination_port"] == 8080),
        "only port 8080 is the service's: {other:?}"
    );

    // reports is gone and its address is another node's: flows say `remote-node`.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "store");
    pods.delete(
        "reports-job-x2k8p",
        &DeleteParams::default().grace_period(0),
    )
    .await
    .expect("delete pod");
    util::kube_apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}}),
    )
    .await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    nodes
        .patch_status(
            "node-b",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": BATCH},
                {"type": "Hostname", "address": "node-b"}]}})),
        )
        .await
        .expect("node status");
    let from_node = eventually("a flow from the other node", WAIT, || {
        reaches_api("batch");
        observe_json(&server, &["--from-ip", BATCH, "--last", "1"])
            .into_iter()
            .find(|f| f["source"]["identity"] == 6)
    });
    assert_eq!(
        from_node["source"]["labels"],
        json!(["reserved:remote-node"]),
        "{from_node}"
    );
    // Hubble's Peer service names the cluster's nodes, at their address and the observer's
    // port, for an upstream hubble-relay.
    let peers = util::hubble::Hubble::generate()
        .call(observer.api, &["peers", "1"])
        .unwrap();
    assert_eq!(
        peers[0],
        json!({"name": "node-b", "address": format!("{BATCH}:{}", observer.api.port()),
               "type": "PEER_ADDED"}),
        "{peers:?}"
    );

    // Isolated, orders keeps the other node out, unless a rule names it as `remote-node`.
    let before = observer.policy_revision();
    util::kube_apply(&client, orders_ingress(Some("checkout"))).await;
    util::wait_for_revision_after(&observer, before);
    assert!(!reaches_api("batch"));
    install_cilium_crd(&client, &observer).await;
    let before = observer.policy_revision();
    util::kube_apply(
        &client,
        json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
               "metadata": {"name": "orders-from-nodes", "namespace": "store"},
               "spec": {"endpointSelector": {"matchLabels": {"app": "orders"}},
                        "ingress": [{"fromEntities": ["remote-node"]}]}}),
    )
    .await;
    util::wait_for_revision_after(&observer, before);
    assert!(reaches_api("batch"), "remote-node admits the other node");

    // `endpoint list`: this node's pods with their interface, the API's names and labels.
    let listed = util::flowscope(&["endpoint", "list", "--server", &server]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    let checkout = listed
        .lines()
        .find(|l| l.contains("store/checkout-5d8f9c"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        checkout.contains(WEB) && checkout.contains("fsl") && checkout.contains("k8s:app=checkout"),
        "{listed}"
    );

    // A server that serves no EndpointSlices: the backends come from the Endpoints object.
    drop(observer);
    let no_slices = api.replica_with(&["--runtime-config=discovery.k8s.io/v1beta1=false"]);
    util::kube_apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": "orders", "namespace": "store"},
               "subsets": [{"addresses": [{"ip": API}],
                            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}),
    )
    .await;
    let observer = self::observer(&no_slices);
    let server = observer.api.to_string();
    assert_eq!(
        observer.status()["kubernetes"]["service_backends"],
        "v1 Endpoints"
    );
    let to_service =
        checkout_to_orders(&server, "a flow to the orders service, from its Endpoints");
    assert_eq!(
        to_service["destination_service"],
        json!({"name": "orders", "namespace": "store"}),
        "{to_service}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_whose_history_was_compacted_lists_again() {
    let (_lab, api, _client) = cluster().await;
    let observer = observer(&api);
    let server = observer.api.to_string();
    assert!(reaches_api("batch"));
    eventually("reports named", WAIT, || {
        observe_json(
            &server,
            &["--from-pod", "store/reports-job-x2k8p", "--last", "1"],
        )
        .into_iter()
        .next()
    });

    // While the observer's API server is away, a replica takes a pod's deletion and a new
    // policy, and etcd's history is compacted past them: the observer's watches cannot resume
    // where they stopped.
    let replica = api.replica();
    let other = replica.client().await;
    api.stop_apiserver();
    eventually(
        "the API server reported away",
        Duration::from_secs(60),
        || (observer.status()["kubernetes"]["connected"] == false).then_some(()),
    );
    let pods: Api<Pod> = Api::namespaced(other.clone(), "store");
    pods.delete(
        "reports-job-x2k8p",
        &DeleteParams::default().grace_period(0),
    )
    .await
    .expect("delete pod");
    util::kube_apply(&other, orders_ingress(Some("checkout"))).await;
    api.compact_etcd();
    let relists = observer.status()["kubernetes"]["relists"].as_u64().unwrap();

    api.start_apiserver();
    // The watches were told 410 Gone and listed again, which brought the deletion they
    // missed.
    eventually("the watches listed again", Duration::from_secs(60), || {
        let k = &observer.status()["kubernetes"];
        (k["connected"] == true
            && k["relists"].as_u64().unwrap() > relists
            && k["pods"] == 2
            && k["policies"] == 1)
            .then_some(())
    });
    // And the policy they brought is enforced.
    eventually("the policy installed", WAIT, || {
        (observer.status()["policy"]["policies"] == 1).then_some(())
    });
    assert!(reaches_api("web"), "checkout is admitted");
    assert!(
        !reaches_api("batch"),
        "the deleted pod's address is no one's"
    );
    let gone = eventually("a flow from the deleted pod's address", WAIT, || {
        observe_json(&server, &["--from-ip", BATCH, "--last", "20"])
            .into_iter()
            .find(|f| f["verdict"] == "DROPPED")
    });
    assert_eq!(gone["source"]["pod_name"], Value::Null, "{gone}");
}
