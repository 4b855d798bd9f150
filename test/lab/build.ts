// npm run lab:build: builds the real tools of the test lab from their Go modules, into a cache directory.
// Idempotent: a component whose binary is there at the pinned version is not built again. Records version,
// build time, binary size, and the exact error of anything that could not be built, in <lab>/components.json.
import { execFile, spawn } from "node:child_process";
import { copyFile, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import { DEBIAN_PACKAGES, GO_COMPONENTS, type GoComponent } from "./components.js";
import { labDir, type ComponentRecord } from "./lab-paths.js";

const run = promisify(execFile);

const LAB = labDir();
const BIN = join(LAB, "bin");
const GO_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  GOMODCACHE: join(LAB, "go", "mod"),
  GOCACHE: join(LAB, "go", "build"),
  GOFLAGS: "-mod=mod",
  GOTOOLCHAIN: "local",
  CGO_ENABLED: "0",
};

interface ModuleInfo {
  GoMod: string;
  Dir: string;
  Error?: string;
}
interface GoModJson {
  Go?: string;
  Require?: Array<{ Path: string; Version: string }>;
  Replace?: Array<{ Old: { Path: string; Version?: string }; New: { Path: string; Version?: string } }>;
}

async function go(args: string[], cwd = LAB): Promise<string> {
  try {
    const { stdout } = await run("go", args, { cwd, env: GO_ENV, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failure = error as { stderr?: string; stdout?: string; message: string };
    const said = (failure.stderr || failure.stdout || failure.message)
      .trim()
      .split("\n")
      .slice(-12)
      .join("\n");
    throw new Error(`go ${args.join(" ")}: ${said}`, { cause: error });
  }
}

/** go build with its output streamed, so that a long build shows it is alive. */
function goBuild(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("go", args, { cwd, env: GO_ENV, stdio: ["ignore", "inherit", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0
        ? resolve()
        : reject(
            new Error(
              `go ${args.join(" ")} exited ${code}: ${stderr.trim().split("\n").slice(-12).join("\n")}`,
            ),
          ),
    );
  });
}

/**
 * The throwaway module: requires the upstream module and carries its replace directives, because `go install
 * module@version` refuses a module whose go.mod has them. A replace that points into the upstream repository
 * itself (`./api`, `./staging/src/k8s.io/api`) becomes the published module at the required version (or at
 * `stagingVersion` where the upstream requires v0.0.0).
 */
function throwawayGoMod(component: GoComponent, upstream: GoModJson): string {
  const required = new Map((upstream.Require ?? []).map((r) => [r.Path, r.Version]));
  const replaces = (upstream.Replace ?? []).map(({ Old, New }) => {
    const old = Old.Version ? `${Old.Path} ${Old.Version}` : Old.Path;
    if (!New.Path.startsWith(".")) return `\t${old} => ${New.Path}${New.Version ? ` ${New.Version}` : ""}`;
    const version = required.get(Old.Path);
    const pinned = !version || version === "v0.0.0" ? component.stagingVersion : version;
    if (!pinned)
      throw new Error(`${component.module} replaces ${Old.Path} with ${New.Path} and no version is known`);
    return `\t${old} => ${Old.Path} ${pinned}`;
  });
  return [
    `module lab.local/${component.name}`,
    "",
    `go ${upstream.Go ?? "1.24"}`,
    "",
    `require ${component.module} ${component.version}`,
    "",
    ...(replaces.length + (component.extraReplaces?.length ?? 0) > 0
      ? ["replace (", ...replaces, ...(component.extraReplaces ?? []).map((r) => `\t${r}`), ")", ""]
      : []),
  ].join("\n");
}

/** The other names of a binary, as symlinks next to it (made again for a cached binary: the list may grow). */
async function linkAliases(component: GoComponent): Promise<void> {
  for (const alias of component.aliases ?? []) {
    await rm(join(BIN, alias), { force: true });
    await symlink(component.name, join(BIN, alias));
  }
}

async function buildGo(component: GoComponent): Promise<ComponentRecord> {
  const binary = join(BIN, component.name);
  const stamp = `${binary}.version`;
  const cached = await readFile(stamp, "utf8").then(
    (v) => v.trim() === component.version,
    () => false,
  );
  if (cached) {
    await linkAliases(component);
    const previous = await previousRecord(component.name);
    return {
      ...(previous ?? { name: component.name, version: component.version }),
      status: "cached",
      sizeBytes: (await stat(binary)).size,
    };
  }
  const started = performance.now();
  try {
    const info = JSON.parse(
      await go(["mod", "download", "-json", `${component.module}@${component.version}`]),
    ) as ModuleInfo;
    if (info.Error) throw new Error(info.Error);
    const upstream = JSON.parse(await go(["mod", "edit", "-json", info.GoMod])) as GoModJson;
    const work = join(LAB, "work", component.name);
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    await writeFile(join(work, "go.mod"), throwawayGoMod(component, upstream));
    console.log(`lab: building ${component.name} ${component.version} (${component.pkg})`);
    await goBuild(["build", "-trimpath", "-ldflags=-s -w", "-o", binary, component.pkg], work);
    if (component.crds) await copyCrds(component, join(info.Dir, component.crds));
    await linkAliases(component);
    await writeFile(stamp, `${component.version}\n`);
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    return {
      name: component.name,
      version: component.version,
      status: "built",
      buildSeconds: seconds,
      sizeBytes: (await stat(binary)).size,
    };
  } catch (error) {
    return {
      name: component.name,
      version: component.version,
      status: "failed",
      error: (error as Error).message,
    };
  }
}

async function copyCrds(component: GoComponent, from: string): Promise<void> {
  const to = join(LAB, "crds", component.name);
  await rm(to, { recursive: true, force: true });
  await mkdir(to, { recursive: true });
  for (const file of await readdir(from)) {
    if (file.endsWith(".yaml") && file !== "kustomization.yaml")
      await copyFile(join(from, file), join(to, file));
  }
}

async function installDebian(): Promise<ComponentRecord[]> {
  const missing = [];
  for (const item of DEBIAN_PACKAGES) {
    if (
      !(await stat(item.binary).then(
        () => true,
        () => false,
      ))
    )
      missing.push(item.pkg);
  }
  if (missing.length > 0) {
    console.log(`lab: apt-get install ${missing.join(" ")}`);
    await run("apt-get", ["update", "-qq"]);
    await run("apt-get", ["install", "-y", "-qq", ...missing], {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  }
  const records: ComponentRecord[] = [];
  for (const item of DEBIAN_PACKAGES) {
    const version = await run("dpkg-query", ["-W", "-f=${Version}", item.pkg]).then(
      (r) => r.stdout.trim(),
      () => "missing",
    );
    const present = await stat(item.binary).then(
      () => true,
      () => false,
    );
    records.push({
      name: item.name,
      version: `Debian ${item.pkg} ${version}`,
      status: present ? "installed" : "failed",
      ...(present ? {} : { error: `${item.binary} missing after apt-get install ${item.pkg}` }),
    });
  }
  return records;
}

async function previousRecord(name: string): Promise<ComponentRecord | undefined> {
  const text = await readFile(join(LAB, "components.json"), "utf8").catch(() => "[]");
  return (JSON.parse(text) as ComponentRecord[]).find((r) => r.name === name && r.status !== "failed");
}

async function main(): Promise<number> {
  const started = performance.now();
  await mkdir(BIN, { recursive: true });
  console.log(`lab: building into ${LAB} with ${(await run("go", ["version"])).stdout.trim()}`);
  const records = await installDebian();
  for (const component of GO_COMPONENTS) {
    const record = await buildGo(component);
    records.push(record);
    const what =
      record.status === "failed"
        ? `FAILED: ${record.error}`
        : `${record.status}${record.buildSeconds ? ` (build ${record.buildSeconds}s)` : ""}, ${((record.sizeBytes ?? 0) / 1048576).toFixed(1)} MiB`;
    console.log(`lab: ${component.name} ${component.version} ${what}`);
  }
  await writeFile(join(LAB, "components.json"), `${JSON.stringify(records, null, 2)}\n`);
  const missing = records.filter(
    (r) => r.status === "failed" && (GO_COMPONENTS.find((c) => c.name === r.name)?.required ?? true),
  );
  if (missing.length > 0) {
    console.error(`lab: the lab cannot run without ${missing.map((m) => m.name).join(", ")}`);
    return 1;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  console.log(`lab: ready in ${seconds}s (${join(LAB, "components.json")})`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
