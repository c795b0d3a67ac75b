"""The Spark service check's job: SparkPi, as Spark's examples/src/main/python/pi.py.

Run by ``spark-submit --master spark://HOST:7077 lambda_check_pi.py SLICES``; the tasks run
on the workers and the driver prints "Pi is roughly 3.14...".
"""

import sys
from operator import add
from random import random

from pyspark.sql import SparkSession


def inside(_):
    x = random() * 2 - 1
    y = random() * 2 - 1
    return 1 if x**2 + y**2 <= 1 else 0


if __name__ == "__main__":
    spark = SparkSession.builder.appName("lambda-check-pi").getOrCreate()
    slices = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    n = 20000 * slices
    count = spark.sparkContext.parallelize(range(1, n + 1), slices).map(inside).reduce(add)
    print(f"Pi is roughly {4.0 * count / n:f}")
    spark.stop()
