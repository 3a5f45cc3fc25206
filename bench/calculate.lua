-- wrk script for POST /calculate. CALC_NUMBER=n sends {"number": n} every time; unset, the
-- numbers cycle 1..14 (every scrypt cost N = 2^2 .. 2^15 equally often).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local fixed = os.getenv("CALC_NUMBER")
local i = 0

request = function()
  local n
  if fixed ~= nil and fixed ~= "" then
    n = fixed
  else
    i = i + 1
    n = tostring((i % 14) + 1)
  end
  return wrk.format(nil, nil, nil, '{"number": ' .. n .. '}')
end

response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
