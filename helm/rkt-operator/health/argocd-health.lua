-- Argo CD health check for rktoperator.io/RktTask, following the kstatus rules the agent's
-- status is written for (observedGeneration, conditions Ready / Reconciling / Stalled, phase).
--
-- Install it in argocd-cm under the key
--   resource.customizations.health.rktoperator.io_RktTask
-- (the whole file is the value). Argo CD runs it with gopher-lua (Lua 5.1); `obj` is the task.
--
--   being deleted                                  -> Progressing
--   no status yet, or an older generation observed -> Progressing
--   Stalled=True (invalid spec, permanent error)   -> Degraded
--   Reconciling=True (starting, replacing, backoff) -> Progressing
--   phase Failed                                   -> Degraded
--   phase Succeeded (a batch task that finished)   -> Healthy
--   Ready=True                                     -> Healthy
--   anything else                                  -> Progressing

local hs = { status = "Progressing", message = "Waiting for the node agent" }

local function describe(cond, fallback)
  if cond == nil then
    return fallback
  end
  local text = cond.reason or fallback
  if cond.message ~= nil and cond.message ~= "" then
    text = text .. ": " .. cond.message
  end
  return text
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.message = "Pending deletion: the agent is stopping the pod"
  return hs
end

local status = obj.status
if status == nil then
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if status.observedGeneration ~= nil and generation ~= nil
    and status.observedGeneration ~= generation then
  hs.message = "The agent has not yet acted on generation " .. tostring(generation)
  return hs
end

local conditions = {}
if status.conditions ~= nil then
  for _, cond in ipairs(status.conditions) do
    if cond.type ~= nil then
      conditions[cond.type] = cond
    end
  end
end

local function isTrue(name)
  return conditions[name] ~= nil and conditions[name].status == "True"
end

if isTrue("Stalled") then
  hs.status = "Degraded"
  hs.message = describe(conditions["Stalled"], "Stalled")
  return hs
end

if isTrue("Reconciling") then
  hs.message = describe(conditions["Reconciling"], "Reconciling")
  return hs
end

if status.phase == "Failed" then
  hs.status = "Degraded"
  local text = "The pod failed"
  if status.exitCode ~= nil then
    text = text .. " with exit code " .. tostring(status.exitCode)
  end
  if conditions["Ready"] ~= nil then
    text = text .. " (" .. describe(conditions["Ready"], "NotReady") .. ")"
  end
  hs.message = text
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "The pod finished successfully"
  return hs
end

if isTrue("Ready") then
  hs.status = "Healthy"
  hs.message = describe(conditions["Ready"], "Running")
  return hs
end

if conditions["Ready"] ~= nil then
  hs.message = describe(conditions["Ready"], "Not ready")
end
return hs
