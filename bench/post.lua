-- wrk script for make bench: POSTs a resident's request (JSON) to the URL
-- given to wrk, a different description and building each time. The same
-- body goes to the bare Flask echo (bench/echo.py) and to intake
-- (POST /api/v1/requests), so that both do the same parsing work. A
-- complaint goes to staff (one escalation), so the requests taken at
-- saturation do not use up the benchmark volunteers' capacity.
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  -- Threads number their requests apart, so bodies never repeat.
  thread:set("offset", (counter + 1) * 10000000)
  counter = counter + 1
end

function request()
  counter = counter + 1
  local n = (offset or 0) + counter
  local body = string.format(
    '{"category":"complaint","description":"wrk %d","building":"%d","unit":"1","room":"101",'
    .. '"contact_name":"\230\181\139\232\175\149","contact_phone":"13812341234","consent":true}',
    n, 1 + n % 69)
  return wrk.format(nil, nil, nil, body)
end
