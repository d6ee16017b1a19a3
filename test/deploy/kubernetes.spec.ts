/**
 * deploy/kubernetes: every object parsed and validated against the Kubernetes schemas
 * (kubernetes-models, and the Prometheus Operator's for ServiceMonitor and PrometheusRule),
 * and checked against what the server and the agent accept: environment variables and flags
 * (their config schemas), ports, probes, selectors and the files the generated objects come from.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { agentConfig, agentNames, kubeExpand, PUBLIC_PROBE_PATHS, read, ROOT, serverConfig, serverEnvNames, sourceOfBuilt, yamlDocs } from './support';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };

// The models' validate() comes from @kubernetes-models/base, whose types this repo's `node`
// module resolution does not see (it reads only package exports): typed here instead.
type Validating = { validate(): void };
const validate = (Model: new (data: any) => unknown, data: unknown) => (new Model(data) as Validating).validate();
const MODELS: Record<string, new (data: any) => unknown> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

const DIR = 'deploy/kubernetes';
const files = readdirSync(join(ROOT, DIR)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
const objects: Array<{ file: string; obj: Obj }> = files.flatMap((file) => yamlDocs(`${DIR}/${file}`).map((obj) => ({ file, obj: obj as Obj })));
const find = (kind: string, name: string) => {
  const o = objects.find((x) => x.obj.kind === kind && x.obj.metadata.name === name)?.obj;
  if (!o) throw new Error(`no ${kind} ${name} in ${DIR}`);
  return o;
};
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The environment a container starts with: envFrom ConfigMaps/Secrets (from secret.example.yaml), then env in order with $(VAR) expanded. */
function containerEnv(pod: any, container: any, fieldRefs: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const src = from.configMapRef ? find('ConfigMap', from.configMapRef.name).data : find('Secret', from.secretRef.name).stringData;
    Object.assign(env, src);
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = kubeExpand(String(e.value), env);
    else if (e.valueFrom?.fieldRef) env[e.name] = fieldRefs[e.valueFrom.fieldRef.fieldPath] ?? (() => { throw new Error(`unknown fieldRef ${e.valueFrom.fieldRef.fieldPath}`); })();
    else throw new Error(`${container.name}: env ${e.name} has no value`);
  }
  void pod;
  return env;
}
const FIELD_REFS = { 'spec.nodeName': 'gpu-node-01', 'status.hostIP': '10.0.0.11', 'status.podIP': '10.244.1.7' };

describe('deploy/kubernetes', () => {
  it(`every object validates against the Kubernetes (and Prometheus Operator) schemas`, () => {
    const seen: string[] = [];
    for (const { file, obj } of objects) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(Model, `${file}: ${obj.apiVersion} ${obj.kind} has no schema here`).toBeDefined();
      expect(() => validate(Model!, obj), `${file}: ${obj.kind} ${obj.metadata.name}`).not.toThrow();
      expect(obj.kind === 'Namespace' || obj.metadata.namespace === 'nuri', `${file}: ${obj.kind} ${obj.metadata.name} in namespace nuri`).toBe(true);
      seen.push(`${obj.kind}/${obj.metadata.name}`);
    }
    expect(new Set(seen).size).toBe(seen.length);
    // The count the deploy note reports: every Kubernetes object checked here.
    console.log(`deploy/kubernetes: ${objects.length} objects validated (${[...new Set(objects.map((o) => o.obj.kind))].join(', ')})`);
    expect(objects.length).toBeGreaterThanOrEqual(21);
  });

  it('the validation can fail: a wrong type, a missing field and a bad duration are refused', () => {
    const api = structuredClone(find('Deployment', 'nuri-api'));
    api.spec.template.spec.containers[0].ports[0].containerPort = '8080';
    expect(() => validate(Deployment, api)).toThrow(/containerPort/);
    const noSelector = structuredClone(find('Deployment', 'nuri-api'));
    delete noSelector.spec.selector;
    expect(() => validate(Deployment, noSelector)).toThrow(/selector/);
    const rule = structuredClone(find('PrometheusRule', 'nuri'));
    rule.spec.groups[0].rules[0].for = 'two minutes';
    expect(() => validate(PrometheusRule, rule)).toThrow(/for/);
  });

  it('kustomization.yaml applies every manifest (the Secrets are made by hand from secret.example.yaml)', () => {
    const k = YAML.parse(read(`${DIR}/kustomization.yaml`)) as { resources: string[]; namespace: string; images: Array<{ name: string }> };
    expect(k.namespace).toBe('nuri');
    expect([...k.resources].sort()).toEqual(files.filter((f) => f !== 'secret.example.yaml'));
    const images = new Set(objects.flatMap(({ obj }) => (obj.spec?.template?.spec?.containers ?? []).map((c: any) => String(c.image).split(':')[0])));
    expect([...images]).toEqual(['nuri']);
    expect(k.images.map((i) => i.name)).toEqual(['nuri']);
  });

  it('the generated PrometheusRule and dashboard ConfigMaps are what deploy/kubernetes/generate.mjs writes from the rules and dashboards', async () => {
    const gen = await import('../../deploy/kubernetes/generate.mjs');
    for (const [file, render] of Object.entries(gen.GENERATED)) expect(read(`${DIR}/${file}`), `${file} is stale: npm run deploy:generate`).toBe(render());
    // And the rule is the file's, group for group; every dashboard is there, for the Grafana sidecar.
    const rules = YAML.parse(read('deploy/prometheus/rules/nuri-alerts.yml')) as { groups: unknown[] };
    expect(find('PrometheusRule', 'nuri').spec.groups).toEqual(rules.groups);
    const dashboards = readdirSync(join(ROOT, 'grafana/dashboards')).filter((f) => f.endsWith('.json')).sort();
    const maps = objects.filter(({ obj }) => obj.kind === 'ConfigMap' && obj.metadata.labels?.grafana_dashboard === '1').map(({ obj }) => obj);
    expect(maps.flatMap((m) => Object.keys(m.data)).sort()).toEqual(dashboards);
    for (const m of maps) for (const [f, text] of Object.entries(m.data)) expect(text).toBe(read(`grafana/dashboards/${f}`));
  });

  const serverDeployments = ['api', 'gateway', 'scheduler'].map((role) => ({ role, d: find('Deployment', `nuri-${role}`) }));

  it('server Deployments: every variable is one the server reads, the whole environment parses, each runs its role', () => {
    const known = serverEnvNames();
    for (const { role, d } of serverDeployments) {
      const pod = d.spec.template.spec;
      const [c] = pod.containers;
      expect(c.args?.[0] ?? c.command?.[0]).toBe('dist/apps/server/src/main.js');
      expect(existsSync(join(ROOT, sourceOfBuilt(c.args[0])))).toBe(true);
      const env = containerEnv(pod, c, FIELD_REFS);
      // Variables only there to be expanded into another ($(POD_IP)) are not the server's.
      const helpers = new Set((c.env ?? []).filter((e: any) => (c.env ?? []).some((o: any) => String(o.value ?? '').includes(`$(${e.name})`))).map((e: any) => e.name));
      for (const name of Object.keys(env)) if (!helpers.has(name)) expect(known.has(name), `${d.metadata.name}: ${name} is not a server setting`).toBe(true);
      const config = serverConfig(env);
      expect([...config.roles]).toEqual([role]);
      expect(config.demo).toBe(false);
      expect(config.host).toBe('0.0.0.0');
      // The port the container declares is the one the server listens on.
      const http = c.ports.find((p: any) => p.name === 'http');
      expect(http.containerPort).toBe(config.port);
      if (role === 'gateway') expect(config.gatewayInternalUrl).toBe(`http://${FIELD_REFS['status.podIP']}:${config.port}`);
    }
    expect(find('Deployment', 'nuri-scheduler').spec.replicas).toBe(2);
  });

  it('a drain keeps one pod of each server role: each PodDisruptionBudget selects its Deployment\'s pods, which run more than one', () => {
    for (const { d } of serverDeployments) {
      const pdb = find('PodDisruptionBudget', d.metadata.name);
      expect(matches(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
      expect(d.spec.replicas).toBeGreaterThan(pdb.spec.minAvailable);
    }
  });

  it('server Deployments: probes ask a path every process answers without a token, on the declared port; non-root, read-only root', () => {
    for (const { d } of serverDeployments) {
      const pod = d.spec.template.spec;
      const [c] = pod.containers;
      expect(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${d.metadata.name}: selector matches its pods`).toBe(true);
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        const g = c[probe]?.httpGet;
        expect(g, `${d.metadata.name} ${probe}`).toBeDefined();
        expect(PUBLIC_PROBE_PATHS).toContain(g.path);
        expect(c.ports.map((p: any) => p.name)).toContain(g.port);
      }
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).toBe(10001);
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    }
  });

  it('Services select their pods by a port they declare; the ServiceMonitor scrapes them all as job="nuri"', () => {
    const services = objects.filter(({ obj }) => obj.kind === 'Service').map(({ obj }) => obj);
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['nuri-api', 'nuri-gateway', 'nuri-scheduler']);
    for (const s of services) {
      const d = serverDeployments.find(({ d }) => matches(s.spec.selector, d.spec.template.metadata.labels))?.d;
      expect(d, `${s.metadata.name} selects a Deployment's pods`).toBeDefined();
      for (const p of s.spec.ports) expect(d!.spec.template.spec.containers[0].ports.map((x: any) => x.name)).toContain(p.targetPort);
    }
    const sm = find('ServiceMonitor', 'nuri');
    const scraped = services.filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    expect(scraped).toHaveLength(services.length);
    for (const e of sm.spec.endpoints) {
      expect(e.path).toBe('/metrics');
      for (const s of scraped) expect(s.spec.ports.map((p: any) => p.name)).toContain(e.port);
      // The token it sends is the one the server checks (NURI_METRICS_TOKEN in the Secret the pods load).
      expect(e.authorization.credentials).toEqual({ name: 'nuri', key: 'NURI_METRICS_TOKEN' });
    }
    // The alert rules say up{job="nuri"}: the job label comes from the Services' part-of label.
    for (const s of scraped) expect(s.metadata.labels![sm.spec.jobLabel]).toBe('nuri');
    expect(read('deploy/prometheus/rules/nuri-alerts.yml')).toContain('up{job="nuri"}');
  });

  it('agent DaemonSet: GPU nodes only, its flags and variables are the agent\'s and parse, its node token comes from the Secret by node name', () => {
    const ds = find('DaemonSet', 'nuri-agent');
    const pod = ds.spec.template.spec;
    const [c] = pod.containers;
    expect(matches(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels)).toBe(true);
    expect(Object.keys(pod.nodeSelector ?? {})).not.toHaveLength(0);
    expect(pod.hostNetwork).toBe(true);
    expect(c.securityContext).toMatchObject({ privileged: true, runAsUser: 0 });
    const [main, ...flags] = c.args as string[];
    expect(main).toBe('dist/apps/agent/src/main.js');
    expect(existsSync(join(ROOT, sourceOfBuilt(main!)))).toBe(true);
    const { env: agentEnv, flags: agentFlags } = agentNames();
    for (const f of flags) expect(agentFlags.has(f.split('=')[0]!), `${f} is not an agent flag`).toBe(true);
    const env = containerEnv(pod, c, FIELD_REFS);
    // NVIDIA_* are for the NVIDIA container runtime, not the agent.
    for (const name of Object.keys(env)) if (!name.startsWith('NVIDIA_')) expect(agentEnv.has(name), `${name} is not an agent setting`).toBe(true);
    const tokenFile = env.NURI_NODE_TOKEN_FILE!;
    expect(tokenFile).toBe(`/etc/nuri/node-tokens/${FIELD_REFS['spec.nodeName']}`);
    const mount = c.volumeMounts.find((m: any) => tokenFile.startsWith(`${m.mountPath}/`));
    const volume = pod.volumes.find((v: any) => v.name === mount.name);
    const secret = find('Secret', volume.secret.secretName);
    expect(Object.keys(secret.stringData)).toContain(FIELD_REFS['spec.nodeName']);
    // The agent parses this configuration (the token file read as it would be on the node).
    const config = agentConfig(flags, { ...env, NURI_NODE_TOKEN_FILE: '', NURI_NODE_TOKEN: secret.stringData[FIELD_REFS['spec.nodeName']] });
    expect(config).toMatchObject({ nodeName: FIELD_REFS['spec.nodeName'], address: FIELD_REFS['status.hostIP'], collector: 'nvidia-smi', logFormat: 'json' });
    expect(config.uidRange).toBeDefined();
    // It reaches the gateway Service on the port the gateway listens on, at the agent path.
    const gw = find('Service', 'nuri-gateway');
    expect(config.gatewayUrl).toBe(`ws://${gw.metadata.name}.nuri.svc:${gw.spec.ports[0].port}/agent`);
    expect(c.volumeMounts.find((m: any) => m.mountPath === config.workDir)).toBeDefined();
  });
});
