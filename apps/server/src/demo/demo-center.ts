import type { CreateTenant } from '@nuri/contracts';

/**
 * The demo center: five tenants whose guarantees add up to the fleet, limits above them
 * so borrowing happens, and 16 nodes (8 H100, 8 H800) across two leaf switches per type.
 */
export const DEMO_TENANTS: CreateTenant[] = [
  { name: 'naver', displayName: 'Naver', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 16, limit: 48 }, { gpuType: 'h800', guaranteed: 8, limit: 32 }] },
  { name: 'kakao', displayName: 'Kakao', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 16, limit: 48 }, { gpuType: 'h800', guaranteed: 8, limit: 32 }] },
  { name: 'lg-ai', displayName: 'LG AI Research', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 16, limit: 40 }, { gpuType: 'h800', guaranteed: 16, limit: 40 }] },
  { name: 'skt', displayName: 'SK Telecom', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 32 }, { gpuType: 'h800', guaranteed: 16, limit: 40 }] },
  { name: 'kt', displayName: 'KT', weight: 1, quotas: [{ gpuType: 'h100', guaranteed: 8, limit: 32 }, { gpuType: 'h800', guaranteed: 16, limit: 40 }] },
];

export interface DemoNode {
  name: string;
  gpuType: 'h100' | 'h800';
  rack: string;
  leafSwitch: string;
}

export function demoNodes(count: number): DemoNode[] {
  const half = Math.ceil(count / 2);
  return Array.from({ length: count }, (_, i) => {
    const gpuType = i < half ? 'h100' : 'h800';
    const k = i < half ? i : i - half;
    const n = String(k + 1).padStart(2, '0');
    const leaf = Math.floor(k / 4);
    return { name: `${gpuType}-${n}`, gpuType, rack: `${gpuType}-rack-${leaf + 1}`, leafSwitch: `${gpuType}-leaf-${leaf + 1}` };
  });
}
