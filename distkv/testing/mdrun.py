"""Run the shell and Python blocks of a markdown document in order, comparing output.

Why: a tutorial that is not executed drifts from the code. This module turns
``docs/tutorial.md`` (and the README) into a test with a small convention that still
reads as an ordinary document:

- A ```` ```sh ```` block holds commands and their output: a line ``$ CMD`` is a
  command, lines ``> MORE`` continue it (here-documents), every other line up to the
  next ``$`` is what the command prints (stdout, then stderr). A line ``...`` matches any
  number of lines, ``...`` inside a line any text. Shell functions (``name() { ...; }``)
  and ``export`` lines are remembered for the later commands.
- A ```` ```python ```` block is a complete program; a ```` ```text ```` block right
  after it is its expected output.
- An HTML comment ``<!-- run: ... -->`` before a block changes how it is run:
  ``skip`` (not executed: hardware, other hosts), ``background NAME`` (one ``$ CMD``
  that keeps running, like a server; the lines shown must appear in its output in this
  order), ``output NAME`` (a ``text`` block: further lines that background NAME must
  print). ``<!-- run: stop NAME -->`` on its own stops it, as Ctrl-C in its terminal
  would; every background command still running is stopped at the next ``##`` heading.
  ``service NAME`` is a background command (a server) that runs on across headings,
  until it is stopped or the document ends. ``eventually`` runs a block's commands
  again until their output matches (a runner's result lands a moment after it prints).

Substitutions (``subst``) let the test run the document's commands in a private temp
directory and port, e.g. ``/var/lib/distkv`` -> a temp dir.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Block", "parse", "Runner", "match"]

_DIRECTIVE = re.compile(r"<!--\s*run:\s*(\w+)\s*(\S*)\s*-->")
_FUNC = re.compile(r"^(\w+\(\)\s*\{.*\}|export\s.*)$")


@dataclass
class Block:
    kind: str  # sh, python, text, stop
    text: str
    line: int  # 1-based line of the fence in the file
    mode: str = ""  # "", skip, background, output
    name: str = ""
    section: int = 0
    output: str | None = field(default=None)  # python: the text block after it


def parse(md: str) -> list[Block]:
    """The runnable blocks of ``md``, in document order."""
    blocks: list[Block] = []
    lines = md.splitlines()
    pending: tuple[str, str] | None = None
    section = 0
    prev_end = -1  # line index of the last closing fence
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## ") or line.startswith("# "):
            section += 1
            blocks.append(Block("section", line, i + 1, section=section))
        elif m := _DIRECTIVE.fullmatch(line.strip()):
            if m[1] == "stop":
                blocks.append(Block("stop", "", i + 1, name=m[2], section=section))
            else:
                pending = (m[1], m[2])
        elif line.startswith("```"):
            lang = line[3:].strip()
            start = i + 1
            body = []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            text = "\n".join(body) + "\n" if body else ""
            mode, name = pending or ("", "")
            pending = None
            blk = Block(lang, text, start, mode, name, section)
            prev = blocks[-1] if blocks else None
            if (
                lang == "text"
                and not mode
                and prev is not None
                and prev.kind == "python"
                and prev.output is None
                and _only_blank(lines[prev_end + 1 : start - 1])
            ):
                prev.output = text
            elif lang in ("sh", "python", "text"):
                blocks.append(blk)
            prev_end = i
        i += 1
    return blocks


def _only_blank(lines: list[str]) -> bool:
    return all(not ln.strip() for ln in lines)


def commands(text: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` pairs of a ``sh`` block."""
    res: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            res.append((line[2:], []))
        elif not res:
            raise ValueError(f"output before the first command: {line!r}")
        elif line.startswith("> ") or line == ">":
            cmd, out = res[-1]
            res[-1] = (cmd + "\n" + line[2:], out)
        else:
            res[-1][1].append(line)
    return [(c, "".join(x + "\n" for x in o)) for c, o in res]


def _pattern(expected: str) -> re.Pattern:
    parts = []
    for line in expected.splitlines():
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(p) for p in line.split("...")) + r"\n")
    return re.compile("".join(parts), re.DOTALL)


def match(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what ``expected`` shows (with ``...`` wildcards)."""
    return _pattern(expected).fullmatch(actual) is not None


class _Background:
    def __init__(self, cmd: str, runner: Runner, service: bool = False):
        self.cmd = cmd
        self.service = service
        self.proc = subprocess.Popen(
            ["bash", "-c", runner.prelude() + cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=runner.env,
            cwd=runner.cwd,
            start_new_session=True,  # its own process group: we stop all it started
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        try:
            for line in self.proc.stdout:
                self.lines.put(line)
        except (ValueError, OSError):  # closed by stop() while a last read was under way
            pass
        self.lines.put("")

    def expect(self, expected: str, timeout: float) -> None:
        """Wait until each line of ``expected`` has appeared, in order."""
        deadline = time.monotonic() + timeout
        for want in expected.splitlines():
            pat = _pattern(want)
            while True:
                left = deadline - time.monotonic()
                try:
                    line = self.lines.get(timeout=max(left, 0.01))
                except queue.Empty:
                    raise AssertionError(
                        f"{self.cmd!r}: no line {want!r} within {timeout} s; saw {self.seen!r}"
                    ) from None
                if not line:
                    raise AssertionError(f"{self.cmd!r} ended before {want!r}; saw {self.seen!r}")
                self.seen.append(line)
                if pat.fullmatch(line):
                    break

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # let the reader reach the end of the output first: closing the pipe under a
        # read in progress raised "I/O operation on closed file" in its thread, which
        # pytest reports as a failure of the whole tutorial test
        self._reader.join(5)
        self.proc.stdout.close()


class Runner:
    """Executes parsed blocks in order; ``env`` points ``distkv`` at the test's server."""

    def __init__(self, env: dict, cwd: Path, subst: dict[str, str] | None = None,
                 timeout: float = 30):  # fmt: skip
        bindir = os.path.dirname(sys.executable)
        self.env = dict(env, PATH=bindir + os.pathsep + env.get("PATH", ""))
        self.cwd = Path(cwd)
        self.subst = subst or {}
        self.timeout = timeout
        self.functions: list[str] = []
        self.background: dict[str, _Background] = {}
        self.executed: list[int] = []  # lines of the blocks run

    def prelude(self) -> str:
        return "".join(f + "\n" for f in self.functions)

    def _s(self, text: str) -> str:
        for a, b in self.subst.items():
            text = text.replace(a, b)
        return text

    def run_all(self, blocks: list[Block], where: str = "") -> None:
        try:
            for blk in blocks:
                try:
                    self.run(blk)
                except AssertionError as exc:
                    raise AssertionError(f"{where}:{blk.line}: {exc}") from None
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        for name in list(self.background):
            self.background.pop(name).stop()

    def run(self, blk: Block) -> None:
        if blk.kind == "section":
            for name in [n for n, b in self.background.items() if not b.service]:
                self.background.pop(name).stop()
            return
        if blk.kind == "stop":
            self.background.pop(blk.name).stop()
            return
        if blk.mode == "skip":
            return
        if blk.mode == "output":
            self.background[blk.name].expect(self._s(blk.text), self.timeout)
            self.executed.append(blk.line)
            return
        if blk.kind == "text":
            return  # prose-like text blocks (file contents, tables)
        self.executed.append(blk.line)
        if blk.kind == "python":
            self._python(blk)
            return
        cmds = commands(blk.text)
        if blk.mode in ("background", "service"):
            assert len(cmds) == 1, "a background block holds one command"
            cmd, out = cmds[0]
            bg = _Background(self._s(cmd), self, service=blk.mode == "service")
            self.background[blk.name] = bg
            bg.expect(self._s(out), self.timeout)
            return
        if blk.mode == "eventually":
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    for cmd, out in cmds:
                        self._shell(cmd, out)
                    return
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        for cmd, out in cmds:
            self._shell(cmd, out)

    def _run(self, argv: list[str]) -> tuple[subprocess.CompletedProcess, str]:
        """Run one block's command to its end, as a user's terminal would (no input);
        the result and what it printed (stdout, then stderr)."""
        res = subprocess.run(
            argv,
            input="",
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=self.timeout,
        )
        return res, res.stdout + res.stderr

    def _shell(self, cmd: str, expected: str) -> None:
        cmd = self._s(cmd)
        res, actual = self._run(["bash", "-c", self.prelude() + cmd])
        want = self._s(expected)
        assert match(want, actual), (
            f"$ {cmd}\n--- expected\n{want}--- got (rc={res.returncode})\n{actual}"
        )
        if _FUNC.match(cmd.strip()):
            self.functions.append(cmd.strip())

    def _python(self, blk: Block) -> None:
        script = self.cwd / f"block{blk.line}.py"
        script.write_text(self._s(blk.text))
        res, actual = self._run([sys.executable, str(script)])
        want = self._s(blk.output or "")
        assert res.returncode == 0 or want, f"python block failed:\n{actual}"
        assert match(want, actual), f"python block\n--- expected\n{want}--- got\n{actual}"
