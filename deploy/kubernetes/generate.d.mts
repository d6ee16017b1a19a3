/** Types of generate.mjs, for the tests that compare its output with the committed files. */
export declare function renderMonitoring(): string;
export declare function renderDashboards(): string;
export declare const GENERATED: Record<string, () => string>;
