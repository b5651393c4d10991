-- Argo CD health check for qmodel.io/QuantizedModel.
-- Install: argocd-cm key `resource.customizations.health.qmodel.io_QuantizedModel` (see docs/argocd.md).
-- Order matters: Suspended > not yet observed (Progressing) > Ready=True (Healthy) > terminal failure
-- (Degraded) > anything else (Progressing: a stage is running or about to).
local hs = {}

-- Ready=False with one of these reasons is terminal until the spec (or the fleet) changes.
local degraded = {
  GateFailed = true, InvalidSpec = true, Infeasible = true, JobFailed = true, OOMKilled = true,
  DeadlineExceeded = true, BackoffLimitExceeded = true, ImagePullBackOff = true, Unschedulable = true,
  Unsupported = true, BadInput = true, Conflict = true, ApiError = true,
  CreateContainerConfigError = true, CrashLoopBackOff = true, ProgressDeadlineExceeded = true,
}

-- Reasons of a stage that is doing work right now.
local active = {
  JobRunning = true, Queued = true, Deploying = true, RollingOut = true, FallingBack = true, Progressing = true,
}

local function describe(cond, fallback)
  if cond == nil then
    return fallback
  end
  local msg = cond.message
  if msg == nil or msg == "" then
    return cond.reason or fallback
  end
  if cond.reason ~= nil and cond.reason ~= "" then
    return cond.reason .. ": " .. msg
  end
  return msg
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no new work starts"
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the resource"
  return hs
end

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration
if observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = nil
local failed = nil
local running = nil
if obj.status.conditions ~= nil then
  for _, cond in ipairs(obj.status.conditions) do
    if cond.type == "Ready" then
      ready = cond
    elseif cond.status == "False" and degraded[cond.reason] and failed == nil then
      failed = cond
    elseif active[cond.reason] and running == nil then
      running = cond
    end
  end
end

-- A Ready condition written for an older generation says nothing about the current spec.
if ready ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(generation)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  local endpoint = obj.status.endpoint
  if endpoint ~= nil and string.find(hs.message, endpoint, 1, true) == nil then
    hs.message = hs.message .. " (" .. endpoint .. ")"
  end
  return hs
end

if ready ~= nil and ready.status == "False" and degraded[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end

-- Ready=False with a non-terminal reason, but a stage reports a terminal failure and nothing is running.
if ready ~= nil and ready.status == "False" and failed ~= nil and running == nil then
  hs.status = "Degraded"
  hs.message = describe(failed, "A stage failed")
  return hs
end

hs.status = "Progressing"
if running ~= nil then
  hs.message = running.type .. " " .. describe(running, "in progress")
else
  hs.message = describe(ready, "Reconciling")
end
return hs
