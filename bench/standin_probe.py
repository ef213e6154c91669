"""How fast the stand-ins themselves are: the ceiling under make bench's figures.
GetItem, TransactWriteItems (2 items) and SendMessageBatch, 200 calls each, at
concurrency 1 and 16. Usage: python standin_probe.py DDB_PORT SQS_PORT (prints markdown rows)."""
import boto3, time, concurrent.futures as cf, uuid, sys
DDB, SQS = sys.argv[1], sys.argv[2]
TABLE = "probe-" + uuid.uuid4().hex[:8]
ddb = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{DDB}", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{SQS}", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
ddb.create_table(TableName=TABLE, AttributeDefinitions=[{"AttributeName":"pk","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"S"}], KeySchema=[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}], BillingMode="PAY_PER_REQUEST")
q = sqs.create_queue(QueueName=TABLE)["QueueUrl"]
def tx(_):
    t=time.time(); k=str(uuid.uuid4())
    ddb.transact_write_items(TransactItems=[{"Put":{"TableName":TABLE,"Item":{"pk":{"S":"E#"+k},"sk":{"S":"E"},"d":{"S":"x"*600}},"ConditionExpression":"attribute_not_exists(pk)"}},{"Put":{"TableName":TABLE,"Item":{"pk":{"S":"D#"+k},"sk":{"S":"D"},"d":{"S":"x"*1200}},"ConditionExpression":"attribute_not_exists(pk)"}}])
    return time.time()-t
def get(_):
    t=time.time(); ddb.get_item(TableName=TABLE, Key={"pk":{"S":"nope"},"sk":{"S":"x"}}, ConsistentRead=True); return time.time()-t
def send(_):
    t=time.time(); sqs.send_message_batch(QueueUrl=q, Entries=[{"Id":"0","MessageBody":"x"*100}]); return time.time()-t
for name,f in [("GetItem",get),("TransactWriteItems",tx),("SendMessageBatch",send)]:
    for conc in [1,16]:
        with cf.ThreadPoolExecutor(conc) as ex:
            t0=time.time(); lat=sorted(ex.map(f, range(200))); el=time.time()-t0
        print(f"| Stand-in ceiling: {name}, concurrency {conc} | {200/el:.0f}/s, p50 {lat[100]*1000:.1f} ms | bench/standin_probe.py (boto3, 200 calls) |")
