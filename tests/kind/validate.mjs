// tests/kind/validate.mjs: offline checks of what `kubectl kustomize deploy/kind` renders.
//
//   node validate.mjs [--kind-config cluster.yaml] [--secrets secrets.yaml]
//                     [--extract DIR] RENDERED.yaml ...
//
// 1. Schemas: every object against the Kubernetes OpenAPI schemas (npm kubernetes-models) and
//    every Istio resource, inside the ConfigMaps too, against Istio's (@kubernetes-models/
//    istio). They catch wrong types and shapes (a string weight, a number where a duration
//    goes); they do not catch unknown fields, which is what `weir validate` adds.
// 2. References the API server would not check at apply time but the pods need: Service-
//    Accounts, ConfigMaps and Secrets a pod uses exist in its namespace (the Secrets in the
//    gen-certs.sh output given with --secrets); Service selectors select a pod template;
//    RBAC binds every proxy's ServiceAccount to list and watch services, pods and
//    endpointslices.
// 3. The hand injection is what Istio's injector does: weir-init (iptables, root,
//    NET_ADMIN + NET_RAW) before weir-proxy (a native sidecar: restartPolicy Always, uid
//    1337, startup and readiness probes on 15021 /healthz/ready), the tlsMode label.
// 4. The kind cluster config keeps to kind.x-k8s.io/v1alpha4's documented keys, and its port
//    mappings reach the gateway's NodePorts (hostPort 8080 -> the http nodePort).
// --extract DIR writes each ConfigMap's files to DIR/<namespace>/<name>/ for `weir validate`.
// Exits 1 with one line per problem.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

const problems = [];
const problem = (where, msg) => problems.push(`${where}: ${msg}`);

const args = process.argv.slice(2);
let kindConfig = null, secretsFile = null, extractDir = null;
const files = [];
while (args.length) {
    const a = args.shift();
    if (a === "--kind-config") kindConfig = args.shift();
    else if (a === "--secrets") secretsFile = args.shift();
    else if (a === "--extract") extractDir = args.shift();
    else files.push(a);
}
if (files.length === 0) {
    console.error("usage: node validate.mjs [--kind-config F] [--secrets F] [--extract DIR] RENDERED.yaml ...");
    process.exit(2);
}

function loadDocs(file, text) {
    const docs = [];
    for (const d of parseAllDocuments(text ?? readFileSync(file, "utf8"))) {
        if (d.errors.length) {
            for (const e of d.errors) problem(file, `YAML: ${e.message}`);
            continue;
        }
        const obj = d.toJS();
        if (obj !== null && obj !== undefined) docs.push(obj);
    }
    return docs;
}

// apiVersion -> the module that holds its models
function moduleOf(apiVersion) {
    if (!apiVersion || typeof apiVersion !== "string") return null;
    if (/^(networking|security|telemetry|extensions)\.istio\.io\//.test(apiVersion))
        return `@kubernetes-models/istio/${apiVersion}`;
    if (apiVersion === "v1") return "kubernetes-models/v1";
    return `kubernetes-models/${apiVersion}`;
}

async function validate(where, obj) {
    const name = `${obj.kind} ${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? "?"}`;
    const spec = moduleOf(obj.apiVersion);
    let mod;
    try {
        mod = spec && (await import(spec));
    } catch {
        mod = null;
    }
    const Model = mod?.[obj.kind];
    if (!Model) {
        problem(where, `${name}: no schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
        return false;
    }
    try {
        new Model(obj).validate();
    } catch (e) {
        problem(where, `${name}: ${e.message}`);
        return false;
    }
    return true;
}

const key = (ns, name) => `${ns ?? "default"}/${name}`;
const all = [];
let istioCount = 0;

for (const file of files) {
    for (const obj of loadDocs(file)) {
        all.push({ file, obj });
        await validate(file, obj);
        if (obj.kind !== "ConfigMap") continue;
        const ns = obj.metadata?.namespace ?? "default";
        for (const [k, text] of Object.entries(obj.data ?? {})) {
            const where = `${file}: ConfigMap ${ns}/${obj.metadata.name} ${k}`;
            if (extractDir) {
                const dir = join(extractDir, ns, obj.metadata.name);
                mkdirSync(dir, { recursive: true });
                writeFileSync(join(dir, k), text);
            }
            if (!/\.ya?ml$/.test(k)) continue;
            for (const inner of loadDocs(where, text)) {
                if (!/\.istio\.io\//.test(inner.apiVersion ?? ""))
                    problem(where, `${inner.kind}: not an Istio resource`);
                else if (await validate(where, inner)) istioCount++;
            }
        }
    }
}

const secrets = new Set();
if (secretsFile) {
    for (const obj of loadDocs(secretsFile)) {
        await validate(secretsFile, obj);
        if (obj.kind === "Secret") secrets.add(key(obj.metadata.namespace, obj.metadata.name));
    }
}

const byKind = (kind) => all.filter((x) => x.obj.kind === kind).map((x) => x.obj);
const has = (kind, ns, name) =>
    byKind(kind).some((o) => key(o.metadata.namespace, o.metadata.name) === key(ns, name));
const matches = (selector, labels) =>
    Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

// workloads: Deployments' pod templates
const pods = byKind("Deployment").map((d) => ({
    where: `Deployment ${key(d.metadata.namespace, d.metadata.name)}`,
    ns: d.metadata.namespace ?? "default",
    labels: d.spec?.template?.metadata?.labels ?? {},
    spec: d.spec?.template?.spec ?? {},
    selector: d.spec?.selector?.matchLabels,
}));

const probeOk = (p) => p?.httpGet?.path === "/healthz/ready" && p?.httpGet?.port === 15021;
const usedServiceAccounts = new Set();

for (const p of pods) {
    if (!matches(p.selector, p.labels)) problem(p.where, "selector does not match the template's labels");
    const sa = p.spec.serviceAccountName ?? "default";
    if (!has("ServiceAccount", p.ns, sa)) problem(p.where, `ServiceAccount ${p.ns}/${sa} is not defined`);
    for (const v of p.spec.volumes ?? []) {
        if (v.configMap && !has("ConfigMap", p.ns, v.configMap.name))
            problem(p.where, `ConfigMap ${p.ns}/${v.configMap.name} (volume ${v.name}) is not defined`);
        if (v.secret) {
            if (!secretsFile) problem(p.where, `Secret ${v.secret.secretName}: no --secrets given to check it`);
            else if (!secrets.has(key(p.ns, v.secret.secretName)))
                problem(p.where, `Secret ${p.ns}/${v.secret.secretName} is not made by gen-certs.sh`);
        }
        if (v.configMap && v.configMap.items) problem(p.where, `volume ${v.name}: items/subPath never update; mount the whole ConfigMap`);
    }
    for (const c of [...(p.spec.containers ?? []), ...(p.spec.initContainers ?? [])])
        for (const m of c.volumeMounts ?? [])
            if (m.subPath) problem(p.where, `${c.name}: subPath mounts are never updated by the kubelet`);

    const inits = p.spec.initContainers ?? [];
    const proxyAt = inits.findIndex((c) => c.name === "weir-proxy");
    const gateway = (p.spec.containers ?? []).find((c) => c.name === "weir-gateway");
    if (gateway) {
        usedServiceAccounts.add(key(p.ns, sa));
        if (!probeOk(gateway.readinessProbe)) problem(p.where, "weir-gateway: readinessProbe must be GET :15021/healthz/ready");
        const i = gateway.args?.indexOf("--labels");
        const labels = Object.fromEntries((gateway.args?.[i + 1] ?? "").split(",").map((kv) => kv.split("=")));
        if (!matches(labels, p.labels)) problem(p.where, "weir-gateway: --labels are not the pod's labels");
    }
    if (proxyAt < 0) continue;
    usedServiceAccounts.add(key(p.ns, sa));
    const proxy = inits[proxyAt];
    const initAt = inits.findIndex((c) => c.name === "weir-init");
    if (initAt < 0 || initAt > proxyAt) problem(p.where, "weir-init must come before weir-proxy");
    else {
        const init = inits[initAt];
        const caps = init.securityContext?.capabilities?.add ?? [];
        if (!caps.includes("NET_ADMIN") || !caps.includes("NET_RAW"))
            problem(p.where, "weir-init needs NET_ADMIN and NET_RAW");
        if (init.securityContext?.runAsUser !== 0) problem(p.where, "weir-init must run as root (runAsUser 0)");
        if (init.args?.[0] !== "iptables") problem(p.where, "weir-init must run `weir iptables`");
    }
    if (proxy.restartPolicy !== "Always") problem(p.where, "weir-proxy must be a native sidecar (restartPolicy: Always)");
    if (proxy.securityContext?.runAsUser !== 1337) problem(p.where, "weir-proxy must run as uid 1337");
    if (!probeOk(proxy.startupProbe)) problem(p.where, "weir-proxy: startupProbe must be GET :15021/healthz/ready");
    if (!probeOk(proxy.readinessProbe)) problem(p.where, "weir-proxy: readinessProbe must be GET :15021/healthz/ready");
    if (proxy.args?.[0] !== "sidecar") problem(p.where, "weir-proxy must run `weir sidecar`");
    if (p.labels["security.istio.io/tlsMode"] !== "istio")
        problem(p.where, "an injected pod carries security.istio.io/tlsMode: istio");
    const i = proxy.args?.indexOf("--labels");
    const labels = Object.fromEntries((proxy.args?.[i + 1] ?? "").split(",").map((kv) => kv.split("=")));
    if (!matches(labels, p.labels)) problem(p.where, "weir-proxy: --labels are not the pod's labels");
}

for (const s of byKind("Service")) {
    const ns = s.metadata.namespace ?? "default";
    if (s.spec?.selector && !pods.some((p) => p.ns === ns && matches(s.spec.selector, p.labels)))
        problem(`Service ${key(ns, s.metadata.name)}`, "its selector selects no pod template");
}

// RBAC: every proxy's account may list and watch what common/k8s.c reads
const needed = [["", "services"], ["", "pods"], ["discovery.k8s.io", "endpointslices"]];
const roles = new Map(byKind("ClusterRole").map((r) => [r.metadata.name, r]));
const granted = new Set();
for (const b of byKind("ClusterRoleBinding")) {
    const role = roles.get(b.roleRef?.name);
    if (!role) {
        problem(`ClusterRoleBinding ${b.metadata.name}`, `ClusterRole ${b.roleRef?.name} is not defined`);
        continue;
    }
    const ok = needed.every(([g, r]) =>
        (role.rules ?? []).some((rule) => rule.apiGroups?.includes(g) && rule.resources?.includes(r) &&
            ["list", "watch"].every((v) => rule.verbs?.includes(v))));
    for (const s of b.subjects ?? []) {
        if (s.kind !== "ServiceAccount") continue;
        if (!has("ServiceAccount", s.namespace, s.name))
            problem(`ClusterRoleBinding ${b.metadata.name}`, `ServiceAccount ${key(s.namespace, s.name)} is not defined`);
        if (ok) granted.add(key(s.namespace, s.name));
    }
}
for (const sa of usedServiceAccounts)
    if (!granted.has(sa)) problem(`ServiceAccount ${sa}`, "a proxy runs as it but may not list/watch services, pods and endpointslices");

if (kindConfig) {
    const [cfg] = loadDocs(kindConfig);
    const where = kindConfig;
    const allowed = {
        top: ["kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
            "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches",
            "containerdConfigPatchesJSON6902"],
        node: ["role", "image", "extraMounts", "extraPortMappings", "labels", "kubeadmConfigPatches",
            "kubeadmConfigPatchesJSON6902"],
        mapping: ["containerPort", "hostPort", "listenAddress", "protocol"],
    };
    const only = (obj, keys, at) => {
        for (const k of Object.keys(obj ?? {})) if (!keys.includes(k)) problem(where, `${at}: unknown key ${k}`);
    };
    if (cfg?.kind !== "Cluster" || cfg?.apiVersion !== "kind.x-k8s.io/v1alpha4")
        problem(where, "must be kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4");
    only(cfg, allowed.top, "the cluster");
    const mappings = [];
    (cfg?.nodes ?? []).forEach((n, i) => {
        only(n, allowed.node, `nodes[${i}]`);
        if (!["control-plane", "worker"].includes(n.role)) problem(where, `nodes[${i}].role: ${n.role}`);
        (n.extraPortMappings ?? []).forEach((m, j) => {
            only(m, allowed.mapping, `nodes[${i}].extraPortMappings[${j}]`);
            if (!Number.isInteger(m.containerPort) || !Number.isInteger(m.hostPort))
                problem(where, `nodes[${i}].extraPortMappings[${j}]: ports must be integers`);
            mappings.push(m);
        });
    });
    const nodePorts = byKind("Service").filter((s) => s.spec?.type === "NodePort")
        .flatMap((s) => (s.spec.ports ?? []).filter((p) => p.nodePort).map((p) => ({ svc: s, p })));
    for (const { svc, p } of nodePorts)
        if (!mappings.some((m) => m.containerPort === p.nodePort))
            problem(where, `no extraPortMapping for nodePort ${p.nodePort} (${svc.metadata.name} ${p.name})`);
    const http = nodePorts.find(({ svc, p }) => svc.metadata.labels?.istio === "ingressgateway" && p.port === 80);
    if (!http || !mappings.some((m) => m.hostPort === 8080 && m.containerPort === http.p.nodePort))
        problem(where, "hostPort 8080 must map to the gateway's http nodePort (curl localhost:8080/v1)");
}

if (problems.length) {
    for (const p of problems) console.log(`validate: ${p}`);
    console.log(`validate: ${problems.length} problem(s)`);
    process.exit(1);
}
console.log(`validate: ${all.length} objects and ${istioCount} Istio resources valid` +
    `${secretsFile ? `, ${secrets.size} Secrets` : ""}${kindConfig ? ", kind config" : ""}`);
