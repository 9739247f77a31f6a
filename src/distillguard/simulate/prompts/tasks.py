"""Generators for task bodies shared by developers, evaluation runners and campaigns: coding,
agentic, long-horizon planning, math and reasoning problems, and the tool results of agent loops.

Campaigns wrap these same bodies in their templates, so the body alone never tells a label."""

from __future__ import annotations

import numpy as np

from distillguard.simulate.prompts._fill import fill

W = {
    "lang": ["Python", "TypeScript", "Go", "Rust", "Java", "C++", "Kotlin", "C#", "SQL", "Bash", "Swift", "Ruby"],
    "thing": ["function", "class", "CLI tool", "REST endpoint", "library module", "unit test suite",
              "background worker", "React component", "database migration", "GitHub Action", "parser"],
    "does": ["parses ISO 8601 durations", "deduplicates a stream of events by key within a time window",
             "implements an LRU cache with TTL", "retries HTTP calls with exponential backoff and jitter",
             "computes the median of a sliding window", "validates IBAN numbers", "merges overlapping intervals",
             "rate-limits requests per API key with a token bucket", "diffs two JSON documents",
             "topologically sorts a dependency graph and reports cycles", "streams a large CSV into Parquet",
             "finds the k most frequent words in a file", "implements a trie with prefix search",
             "schedules jobs with cron syntax", "converts Markdown tables to HTML", "shards keys with consistent hashing"],
    "constraint": ["", " Include type hints.", " Add tests.", " Avoid external dependencies.", " It must be O(n log n).",
                   " Handle malformed input gracefully.", " Make it thread-safe.", " Keep memory bounded."],
    "bug": ["IndexError on empty input", "off-by-one at the window boundary", "deadlock under load",
            "wrong result for negative numbers", "memory leak after many requests", "flaky test on CI"],
    "repo_task": ["add pagination to the /users endpoint", "migrate the config loader from YAML to TOML",
                  "fix the failing test in tests/test_billing.py", "upgrade the ORM and fix deprecations",
                  "add retry logic to the S3 uploader", "refactor the auth middleware into its own module",
                  "find why the nightly export is slow and speed it up", "add a --dry-run flag to the CLI"],
    "goal": ["book the cheapest flight from Berlin to Tokyo next month and add it to my calendar",
             "find all services in the cluster whose TLS certificates expire within 30 days and renew them",
             "collect the quarterly revenue of five competitors from their filings and chart it",
             "triage the 40 open bugs labelled 'p1' and draft a fix plan for each",
             "set up a CI pipeline that builds, tests and deploys the app to staging",
             "reconcile last month's invoices against bank transactions and flag mismatches",
             "migrate a PostgreSQL database to a new server with under 5 minutes of downtime",
             "research suppliers for recycled packaging and email the top three for quotes"],
    "tools": ["a shell, a browser and a file editor", "search, calendar and email tools", "a Python sandbox and SQL access",
              "kubectl, a metrics API and a ticketing system", "a web browser only"],
    "objective": ["launch a mobile banking app in two new markets", "migrate a monolith to microservices",
                  "reduce cloud spend by 30%", "prepare a team of 6 for a SOC 2 audit",
                  "ship an ML-based recommendation feature", "open a second restaurant location",
                  "rewrite the billing system without downtime", "build a research lab's data platform"],
    "weeks": ["6", "8", "12", "16", "26", "52"],
    "team": ["a 5-person startup", "a 40-person engineering org", "a solo founder", "a hospital IT team",
             "a university research group"],
    "who": ["Alice", "Bob", "Priya", "Chen", "Maria", "Omar", "Yuki", "Lena"],
    "item": ["apples", "notebooks", "tickets", "marbles", "cupcakes", "stamps", "bricks"],
}

CODE = [
    "Write a {lang} {thing} that {does}.{constraint}", "Implement a {lang} {thing} that {does}.{constraint}",
    "In {lang}, how would you write a {thing} that {does}?{constraint}",
    "Review this {lang} {thing} that {does} and explain what causes the {bug}.",
    "My {lang} code that {does} fails with: {bug}. How do I fix it?",
    "Fix the bug in this function:\n```python\ndef window_max(xs, k):\n    out = []\n    for i in range(len(xs) - k):\n"
    "        out.append(max(xs[i:i + k]))\n    return out\n```",
    "Write {lang} code that {does}, then explain its time and space complexity.",
]
AGENT = [
    "You can use {tools}. Goal: {goal}. Plan the steps, decide which tool to call first and why.",
    "Task for the agent: {goal}. Available tools: {tools}. Think about failure cases before acting.",
    "In this repo, {repo_task}. Run the tests after each change.", "{repo_task}, then open a PR with a summary.",
    "Using {tools}, {goal}. Report progress after every tool call.",
]
PLAN = [
    "Create a detailed {weeks}-week plan to {objective} for {team}, with milestones, risks and dependencies.",
    "We need to {objective}. Break it into phases for {team}, estimate effort, and list what could go wrong.",
    "Draft a long-horizon roadmap ({weeks} weeks) to {objective}. Include decision points and fallback options.",
]
MATH = [
    "{who} has {int} {item}. She gives {small} to each of {small} friends and buys {int} more. "
    "How many {item} does she have now?",
    "A shop sells {item} at {price} dollars each with a {small}% discount on orders over {int}. "
    "What does an order of {int} cost?",
    "Find all real x such that x^2 - {small}x + {small} = 0.", "What is the sum of the first {int} positive odd numbers?",
    "A rectangle has perimeter {int} and its length is {small} more than its width. Find its area.",
    "How many positive divisors does {int} have?", "{who} runs {small} km per day for {small} weeks, "
    "resting one day a week. How far does {who} run in total?",
]
REASON = [
    "If every {item} is a thing {who} owns and {who} owns no red things, can a {item} be red? Explain.",
    "Sort these words alphabetically: {who} {item} {lang} zebra apple mango.",
    "Which is heavier, {small} kg of {item} or {small} kg of feathers? Answer and justify.",
    "Is the following argument valid? All engineers drink coffee. {who} drinks coffee. So {who} is an engineer.",
]
TOOL_RESULT = [
    "Tool result (bash): exit code {code}\n{out}", "Tool result (read_file): {small} lines, first error at line {int}",
    "tests: {int} passed, {small} failed\nFAILED tests/test_api.py::test_pagination - AssertionError",
    "Tool result (search): {small} results. Top: '{goal}' - docs page updated {small} days ago",
    "continue", "The command timed out after {small}0s. Try a different approach.",
    "Tool result (http): 200 OK, {int} bytes, content-type application/json",
]
W_TOOL = {**W, "code": ["0", "1", "2", "127"],
          "out": ["ModuleNotFoundError: No module named 'yaml'", "ok", "Traceback (most recent call last): ...",
                  "error: cannot borrow `x` as mutable", "Build succeeded in {small}.2s"]}


def code(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, CODE, W, n)


def agent(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, AGENT, W, n)


def plan(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, PLAN, W, n)


def math(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, MATH, W, n)


def reason(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, REASON, W, n)


def tool_result(rng: np.random.Generator, n: int) -> list[str]:
    return fill(rng, TOOL_RESULT, W_TOOL, n)
