export * from './metrics';
export * from './nuri-metrics';
export * from './registry';
export * from './idle';
export { FleetState, gpuTypeFromModel, normalizeThrottleReason, type GpuIdentity, type GpuOwner, type GpuSampleValues } from './fleet';
export { escapeLabelValue, formatValue } from './exposition';
export * from './parse';
export { DASHBOARD_SPECS, generateDashboards, dashboardFileText } from './dashboards/dashboards';
export { DATASOURCE_INPUT, DATASOURCE_UID, DATASOURCE_VARIABLE, buildDashboard, dashboardExpressions } from './dashboards/grafana';
